"""Transducer forward: losses, shapes, gradients; pruned loss == full loss when nothing is pruned."""

from __future__ import annotations

import pytest
import torch

from kd.losses import rnnt_loss
from kd.models import build_model

VOCAB = 13


def batch(lengths: list[int], label_lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    x = torch.randn(len(lengths), max(lengths), 80)
    y = [torch.randint(1, VOCAB, (n,)).tolist() for n in label_lengths]
    return x, torch.tensor(lengths), y


@pytest.mark.parametrize("decoder_type", ["stateless", "lstm", "tied"])
def test_forward_gives_finite_losses_and_gradients(tiny_model_config, decoder_type):
    model = build_model(tiny_model_config(decoder_type), VOCAB)
    x, x_lens, y = batch([90, 75, 60], [7, 3, 5])
    out = model(x, x_lens, y, prune_range=3)
    t = int(out.encoder_out_lens.max())
    assert out.encoder_out.shape == (3, t, 32)
    assert torch.equal(out.encoder_out_lens, model.encoder.output_lengths(x_lens))
    assert out.decoder_out.shape == (3, 8, 24)
    assert out.ranges.shape == (3, t, 3)
    assert out.logits.shape == (3, t, 3, VOCAB)
    assert out.symbols.shape == (3, 7)
    assert out.boundary.tolist() == [[0, 0, n, int(m)] for n, m in zip([7, 3, 5], out.encoder_out_lens)]
    assert out.simple_loss.dim() == 0 and out.pruned_loss.dim() == 0
    assert torch.isfinite(out.simple_loss) and torch.isfinite(out.pruned_loss)
    (out.simple_loss + out.pruned_loss).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_reduction_none_gives_one_loss_per_utterance(tiny_model_config):
    model = build_model(tiny_model_config(), VOCAB).eval()
    x, x_lens, y = batch([80, 64], [4, 2])
    with torch.no_grad():
        per_utt = model(x, x_lens, y, reduction="none")
        summed = model(x, x_lens, y, reduction="sum")
    assert per_utt.pruned_loss.shape == (2,) and per_utt.simple_loss.shape == (2,)
    torch.testing.assert_close(per_utt.pruned_loss.sum(), summed.pruned_loss)
    torch.testing.assert_close(per_utt.simple_loss.sum(), summed.simple_loss)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_pruned_loss_equals_full_loss_when_the_range_covers_the_lattice(tiny_model_config, rnnt_type):
    model = build_model(tiny_model_config(), VOCAB).eval()
    x, x_lens, y = batch([96, 70, 81], [6, 2, 4])
    with torch.no_grad():
        out = model(x, x_lens, y, prune_range=7, rnnt_type=rnnt_type, reduction="none")
        logits = model.full_logits(out.encoder_out, out.decoder_out)
        full = rnnt_loss(
            logits=logits,
            symbols=out.symbols,
            termination_symbol=0,
            boundary=out.boundary,
            rnnt_type=rnnt_type,
            reduction="none",
        )
    torch.testing.assert_close(out.pruned_loss, full, atol=1e-4, rtol=1e-5)


def test_pruned_loss_differs_from_full_loss_with_a_narrow_range(tiny_model_config):
    # Guards the test above: with s_range 2 < U + 1 nodes are dropped, so the losses must differ.
    model = build_model(tiny_model_config(), VOCAB).eval()
    x, x_lens, y = batch([96], [9])
    with torch.no_grad():
        out = model(x, x_lens, y, prune_range=2, reduction="none")
        full = rnnt_loss(
            logits=model.full_logits(out.encoder_out, out.decoder_out),
            symbols=out.symbols,
            termination_symbol=0,
            boundary=out.boundary,
            reduction="none",
        )
    assert (out.pruned_loss - full).abs().max() > 1e-3


def test_pruned_logits_are_the_full_lattice_at_the_ranges(tiny_model_config):
    model = build_model(tiny_model_config(), VOCAB).eval()
    x, x_lens, y = batch([72, 60], [5, 3])
    with torch.no_grad():
        out = model(x, x_lens, y, prune_range=3)
        full = model.full_logits(out.encoder_out, out.decoder_out)  # (B, T, U+1, V)
    gathered = torch.gather(full, 2, out.ranges[..., None].expand(-1, -1, -1, VOCAB))
    torch.testing.assert_close(out.logits, gathered, atol=1e-5, rtol=1e-5)


def test_encoder_logits_are_the_joiner_with_the_decoder_term_zero(tiny_model_config):
    joiner = build_model(tiny_model_config(), VOCAB).joiner
    h = torch.randn(2, 9, 32)
    expected = joiner(joiner.encoder_proj(h), torch.zeros(1), project_input=False)
    torch.testing.assert_close(joiner.encoder_logits(h), expected)
    assert joiner.encoder_logits(h).shape == (2, 9, VOCAB)


def test_labels_outside_the_vocabulary_are_a_clear_error(tiny_model_config):
    model = build_model(tiny_model_config(), VOCAB)
    x, x_lens, _ = batch([60, 60], [1, 1])
    with pytest.raises(ValueError, match="tokenizer does not match the model"):
        model(x, x_lens, [[1, 2], [VOCAB]])
    with pytest.raises(ValueError, match="blank id 0"):
        model(x, x_lens, [[1, 0], [3]])
    with pytest.raises(ValueError, match="1 transcripts for a batch of 2"):
        model(x, x_lens, [[1]])
    with pytest.raises(ValueError, match="fewer than 7 feature frames"):
        model(x, torch.tensor([60, 5]), [[1], [2]])


def test_causal_model_trains(tiny_model_config):
    cfg = tiny_model_config(
        causal=True, chunk_size=4, left_context_frames=8, dynamic_chunk_training=True, dropout=0.1
    )
    model = build_model(cfg, VOCAB).train()
    x, x_lens, y = batch([80, 66], [4, 6])
    out = model(x, x_lens, y)
    (out.simple_loss + out.pruned_loss).backward()
    assert torch.isfinite(out.pruned_loss)


def test_ctc_head_loss_is_the_ctc_of_its_log_probs_and_trains_the_encoder(tiny_model_config):
    config = tiny_model_config()
    config.ctc_head = True
    model = build_model(config, VOCAB)
    x, x_lens, y = batch([90, 75], [6, 3])
    out = model(x, x_lens, y)
    ctc = model.ctc_loss(out.encoder_out, out.encoder_out_lens, out.symbols, out.boundary[:, 2], "none")
    log_probs = model.ctc_output(out.encoder_out).log_softmax(-1).double()
    for b, labels in enumerate(y):
        # Forward algorithm over the blank-extended label sequence, written out in float64.
        ext = [0]
        for token in labels:
            ext += [token, 0]
        alpha = torch.full((len(ext),), float("-inf"), dtype=torch.float64)
        alpha[0], alpha[1] = log_probs[b, 0, 0], log_probs[b, 0, ext[1]]
        for t in range(1, int(out.encoder_out_lens[b])):
            prev = alpha.clone()
            for s in range(len(ext)):
                terms = [prev[s]] + ([prev[s - 1]] if s >= 1 else [])
                if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2]:
                    terms.append(prev[s - 2])
                alpha[s] = torch.logsumexp(torch.stack(terms), 0) + log_probs[b, t, ext[s]]
        expected = -torch.logsumexp(alpha[-2:], 0)
        torch.testing.assert_close(ctc[b].double(), expected, rtol=1e-4, atol=1e-4)
    ctc.sum().backward()
    assert model.ctc_output.weight.grad is not None
    assert model.encoder.layers[0].ff.net[1].weight.grad.abs().sum() > 0


def test_ctc_loss_without_a_head_is_an_error(tiny_model_config):
    model = build_model(tiny_model_config(), VOCAB)
    assert model.ctc_output is None
    x, x_lens, y = batch([60], [2])
    out = model(x, x_lens, y)
    with pytest.raises(RuntimeError, match="ctc_head"):
        model.ctc_loss(out.encoder_out, out.encoder_out_lens, out.symbols, out.boundary[:, 2])
