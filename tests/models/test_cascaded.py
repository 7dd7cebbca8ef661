"""Cascaded two-pass model: shapes, causality of the first pass, shared decoder/joiner, both losses,
streaming the first pass, config checks and the presets' sizes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_model_params import encoder_formula, linear

from kd.config import ConfigError, from_dict, load_yaml, save_yaml, to_dict
from kd.decode import decode_batch, greedy_search_batch, streaming_greedy_search
from kd.models import (
    CascadedTransducer,
    ConformerEncoder,
    DecoderConfig,
    ModelConfig,
    SecondPassConfig,
    Transducer,
    build_model,
    count_parameters,
    format_parameter_counts,
    preset,
)
from kd.train.objective import LossConfig, TransducerObjective

VOCAB = 13
CHUNK = 4


def cascaded_config(tiny_encoder_config, decoder_type: str = "stateless", **second_pass) -> ModelConfig:
    """Causal first pass (d 32, chunks of 4 frames); a one-block second pass of d 48 (projections in/out)."""
    fields = dict(num_layers=1, d_model=48, num_heads=4, ffn_dim=64, conv_kernel=5, dropout=0.0)
    fields.update(second_pass)
    return ModelConfig(
        encoder=tiny_encoder_config(causal=True, chunk_size=CHUNK, left_context_frames=8),
        decoder=DecoderConfig(type=decoder_type, dim=24, context_size=2, dropout=0.0),
        joiner_dim=24,
        second_pass=SecondPassConfig(**fields),
    )


def batch(lengths: list[int], label_lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    x = torch.randn(len(lengths), max(lengths), 80)
    y = [torch.randint(1, VOCAB, (n,)).tolist() for n in label_lengths]
    return x, torch.tensor(lengths), y


def test_forward_shapes_and_weighted_losses(tiny_encoder_config):
    cfg = cascaded_config(tiny_encoder_config, first_pass_weight=0.3, second_pass_weight=0.7)
    model = build_model(cfg, VOCAB).eval()
    assert isinstance(model, CascadedTransducer)
    x, x_lens, y = batch([90, 75, 60], [7, 3, 5])
    with torch.no_grad():
        out = model(x, x_lens, y, prune_range=3)
        final, final_lens = model.encoder(x, x_lens)
    t = int(model.encoder.output_lengths(x_lens).max())
    for p in (out.first_pass, out.second_pass):
        assert p.encoder_out.shape == (3, t, 32)  # both passes in the first pass's dimension (the joiner's)
        assert torch.equal(p.encoder_out_lens, model.encoder.output_lengths(x_lens))
        assert p.decoder_out.shape == (3, 8, 24)
        assert p.logits.shape == (3, t, 3, VOCAB)
        assert torch.isfinite(p.simple_loss) and torch.isfinite(p.pruned_loss)
    assert torch.equal(out.encoder_out_lens, final_lens)
    # model.encoder is the second (final) pass.
    torch.testing.assert_close(final, out.second_pass.encoder_out)
    assert (out.first_pass.encoder_out - out.second_pass.encoder_out).abs().max() > 1e-3
    torch.testing.assert_close(
        out.pruned_loss, 0.3 * out.first_pass.pruned_loss + 0.7 * out.second_pass.pruned_loss
    )
    torch.testing.assert_close(
        out.simple_loss, 0.3 * out.first_pass.simple_loss + 0.7 * out.second_pass.simple_loss
    )


def test_each_pass_loss_equals_a_one_pass_transducer_on_its_encoder_output(tiny_encoder_config):
    """The loss code is the one-pass model's: rebuild the first pass as a Transducer sharing its modules."""
    model = build_model(cascaded_config(tiny_encoder_config), VOCAB).eval()
    one_pass = Transducer(model.encoder.first_pass, model.decoder, model.joiner, VOCAB)
    one_pass.simple_am_proj = model.simple_am_proj
    one_pass.simple_lm_proj = model.simple_lm_proj
    x, x_lens, y = batch([80, 64], [4, 2])
    with torch.no_grad():
        out = model(x, x_lens, y, reduction="none")
        ref = one_pass(x, x_lens, y, reduction="none")
    torch.testing.assert_close(out.first_pass.pruned_loss, ref.pruned_loss)
    torch.testing.assert_close(out.first_pass.simple_loss, ref.simple_loss)
    assert out.pruned_loss.shape == (2,)


def test_first_pass_ignores_inputs_after_its_chunk(tiny_encoder_config):
    model = build_model(cascaded_config(tiny_encoder_config), VOCAB).eval()
    x, x_lens = torch.randn(1, 120, 80), torch.tensor([120])
    c = 2  # chunk index; its last frame reads feature frames up to 4 * ((c + 1) * CHUNK - 1) + 6
    first_unseen = 4 * ((c + 1) * CHUNK - 1) + 7
    y = x.clone()
    y[:, first_unseen:] = torch.randn_like(y[:, first_unseen:])
    with torch.no_grad():
        a_first, a_second, _ = model.encoder.forward_both(x, x_lens)
        b_first, b_second, _ = model.encoder.forward_both(y, x_lens)
    end = (c + 1) * CHUNK
    torch.testing.assert_close(a_first[:, :end], b_first[:, :end], atol=1e-6, rtol=0)
    assert (a_first[:, end:] - b_first[:, end:]).abs().max() > 1e-3
    # The second pass looks ahead: its early frames do change.
    assert (a_second[:, :end] - b_second[:, :end]).abs().max() > 1e-3


def test_second_pass_ignores_padding(tiny_encoder_config):
    model = build_model(cascaded_config(tiny_encoder_config), VOCAB).eval()
    x = torch.randn(1, 60, 80)
    padded = torch.cat((x, 5 * torch.randn(1, 40, 80)), dim=1)
    with torch.no_grad():
        alone, n = model.encoder(x, torch.tensor([60]))
        batched, _ = model.encoder(padded, torch.tensor([60]))
    torch.testing.assert_close(batched[:, : int(n)], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoder_type", ["stateless", "tied"])
def test_both_losses_reach_the_shared_decoder_and_joiner(tiny_encoder_config, decoder_type):
    model = build_model(cascaded_config(tiny_encoder_config, decoder_type), VOCAB).train()
    x, x_lens, y = batch([80, 66], [4, 6])
    out = model(x, x_lens, y)
    shared = [*model.decoder.parameters(), *model.joiner.parameters()]
    first_pass = list(model.encoder.first_pass.parameters())
    second_pass = list(model.encoder.second_pass.parameters())
    params = shared + first_pass + second_pass
    for name, loss in (("first", out.first_pass.pruned_loss), ("second", out.second_pass.pruned_loss)):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        by_part = {
            "shared": grads[: len(shared)],
            "first_pass": grads[len(shared) : len(shared) + len(first_pass)],
            "second_pass": grads[len(shared) + len(first_pass) :],
        }
        for part in ("shared", "first_pass"):
            norm = sum(float(g.abs().sum()) for g in by_part[part] if g is not None)
            assert norm > 0 and all(g is None or torch.isfinite(g).all() for g in by_part[part]), (name, part)
        reaches_second = any(g is not None and float(g.abs().sum()) > 0 for g in by_part["second_pass"])
        assert reaches_second == (name == "second")
    (out.simple_loss + out.pruned_loss).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_decoder_and_joiner_are_one_module(tiny_encoder_config):
    model = build_model(cascaded_config(tiny_encoder_config, "tied"), VOCAB)
    first = model.first_pass
    assert first.encoder is model.encoder.first_pass
    assert first.decoder is model.decoder and first.joiner is model.joiner
    # Tied-and-reduced: the decoder's embedding table is the joiner's output layer, one tensor.
    assert model.decoder.embedding.weight is model.joiner.output_linear.weight
    # One joiner, so no per-pass copies in the checkpoint: every state_dict key under the encoder or the
    # shared modules, once.
    keys = list(model.state_dict())
    assert len(keys) == len(set(keys))
    assert not [
        k
        for k in keys
        if k.split(".")[0] not in {"encoder", "joiner", "decoder", "simple_am_proj", "simple_lm_proj"}
    ]
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def test_first_pass_streams_like_its_chunked_forward(tiny_encoder_config):
    model = build_model(cascaded_config(tiny_encoder_config), VOCAB).eval()
    encoder = model.first_pass.encoder
    x = torch.randn(2, 150, 80)
    x_lens = torch.tensor([150, 101])
    hop = encoder.chunk_size * encoder.subsampling_factor
    window = hop + encoder.streaming_pad_frames
    with torch.no_grad():
        full, full_lens = encoder(x, x_lens)
        states = encoder.get_init_states(2)
        outs = []
        for start in range(0, x.size(1) - encoder.streaming_pad_frames, hop):
            chunk = F.pad(x[:, start : start + window], (0, 0, 0, max(0, start + window - x.size(1))))
            lens = (x_lens - start).clamp(min=0, max=window)
            out, _, states = encoder.streaming_forward(chunk, lens, states)
            outs.append(out)
    streamed = torch.cat(outs, dim=1)
    for b, n in enumerate(full_lens.tolist()):
        torch.testing.assert_close(streamed[b, :n], full[b, :n], atol=1e-5, rtol=1e-5)


def test_decoding_both_passes(tiny_encoder_config):
    model = build_model(cascaded_config(tiny_encoder_config), VOCAB).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[0] = -2.0  # fewer blanks, so the hypotheses are not empty
    x, x_lens = torch.randn(2, 130, 80), torch.tensor([130, 97])
    first_out, second_out, lens = model.encoder.forward_both(x, x_lens)
    streamed = streaming_greedy_search(model.first_pass, x, x_lens, max_sym_per_frame=2)
    assert streamed == greedy_search_batch(model, first_out, lens, max_sym_per_frame=2)
    assert any(streamed)
    assert decode_batch(model.first_pass, x, x_lens, "streaming_greedy_search") == decode_batch(
        model.first_pass, x, x_lens, "greedy_search"
    )
    # The cascaded model itself decodes its second pass, and refuses to stream it.
    assert decode_batch(model, x, x_lens, "greedy_search") == greedy_search_batch(model, second_out, lens)
    with pytest.raises(ValueError, match="needs a causal encoder"):
        streaming_greedy_search(model, x, x_lens)


def test_transducer_objective_trains_it_unchanged(tiny_encoder_config):
    model = build_model(cascaded_config(tiny_encoder_config), VOCAB).train()
    x, x_lens, y = batch([80, 70], [3, 5])
    tokenizer = SimpleNamespace(encode=lambda texts: y)
    loss = TransducerObjective(LossConfig(prune_range=3), tokenizer)(
        model, {"features": x, "feature_lens": x_lens, "texts": ["a", "b"]}, step=0
    )
    assert loss.num_frames == int(model.encoder.output_lengths(x_lens).sum())
    assert torch.isfinite(loss.total) and loss.total.requires_grad


def test_config_checks_and_round_trip(tiny_encoder_config, tmp_path):
    with pytest.raises(ConfigError, match="second_pass needs a causal encoder"):
        ModelConfig(encoder=tiny_encoder_config(), second_pass=SecondPassConfig())
    with pytest.raises(ConfigError, match="second_pass.conv_kernel=4 must be odd"):
        SecondPassConfig(conv_kernel=4)
    with pytest.raises(ConfigError, match="multiple of 2 \\* second_pass.num_heads=8"):
        SecondPassConfig(d_model=36, num_heads=4)
    with pytest.raises(ConfigError, match="not both 0"):
        SecondPassConfig(first_pass_weight=0.0, second_pass_weight=0.0)
    cfg = cascaded_config(tiny_encoder_config)
    save_yaml(cfg, tmp_path / "model.yaml")
    assert load_yaml(ModelConfig, tmp_path / "model.yaml") == cfg
    # A config without the section (every existing one) is a one-pass transducer, as before.
    plain = to_dict(cfg)
    del plain["second_pass"]
    one_pass = from_dict(ModelConfig, plain)
    assert one_pass.second_pass is None
    assert type(build_model(one_pass, VOCAB)) is Transducer


def block_formula(d: int, f: int, k: int) -> int:
    norm = 2 * d
    ffn = norm + linear(d, f) + linear(f, d)
    mhsa = norm + linear(d, 3 * d) + linear(d, d)
    conv = norm + linear(d, 2 * d) + (d * k + d) + norm + linear(d, d)
    return 2 * ffn + mhsa + conv


def cascaded_formula(cfg: ModelConfig, vocab: int) -> dict[str, int]:
    d, sp, j, dec = cfg.encoder.d_model, cfg.second_pass, cfg.joiner_dim, cfg.decoder
    second = sp.num_layers * block_formula(sp.d_model, sp.ffn_dim, sp.conv_kernel) + 2 * sp.d_model
    if sp.d_model != d:
        second += linear(d, sp.d_model) + linear(sp.d_model, d)
    if dec.type == "tied":
        decoder = dec.context_size * dec.dim + 2 * dec.dim
    else:
        decoder = vocab * dec.dim + dec.dim * dec.context_size
    counts = {
        "encoder": encoder_formula(cfg.encoder) + second,
        "joiner": linear(d, j) + linear(dec.dim, j) + linear(j, vocab),
        "decoder": decoder,
        "simple_am_proj": linear(d, vocab),
        "simple_lm_proj": linear(dec.dim, vocab),
    }
    counts["total"] = sum(counts.values())
    return counts


def test_cascaded_presets_follow_the_compression_rule():
    """Student ~ half the teacher (band 0.45 .. 0.55), with the teacher's non-causal second pass."""
    teacher_cfg, student_cfg = preset("synth_cascaded_teacher"), preset("synth_cascaded_student")
    teacher, student = build_model(teacher_cfg, 500), build_model(student_cfg, 500)
    counts = {}
    for name, cfg, model in (("teacher", teacher_cfg, teacher), ("student", student_cfg, student)):
        counts[name] = count_parameters(model)
        assert counts[name] == {**cascaded_formula(cfg, 500), "nonzero": counts[name]["nonzero"]}
        first = sum(p.numel() for p in model.encoder.first_pass.parameters())
        second = sum(p.numel() for p in model.encoder.second_pass.parameters())
        print(
            f"synth_cascaded_{name}: {format_parameter_counts(counts[name])}; first pass {first:,}, "
            f"second pass {second:,}"
        )
    assert student_cfg.second_pass == teacher_cfg.second_pass
    assert student_cfg.encoder.causal and teacher_cfg.encoder.causal
    assert student_cfg.decoder.type == "tied"
    ratio = counts["student"]["total"] / counts["teacher"]["total"]
    print(f"student / teacher = {ratio:.3f}")
    assert 0.45 <= ratio <= 0.55, ratio


def test_first_pass_is_a_plain_causal_conformer(tiny_encoder_config):
    model = build_model(cascaded_config(tiny_encoder_config), VOCAB)
    assert type(model.first_pass.encoder) is ConformerEncoder and model.first_pass.encoder.causal
    assert not model.encoder.causal and model.encoder.chunk_size == -1
