"""Decoders: step-by-step outputs equal forward's rows; state selection; the tied decoder's shared tensor."""

from __future__ import annotations

import pytest
import torch

from kd.models import build_model

VOCAB = 11


def labels(batch: int, length: int) -> torch.Tensor:
    """(B, U+1): blank, then labels in [1, V)."""
    y = torch.randint(1, VOCAB, (batch, length + 1))
    y[:, 0] = 0
    return y


@pytest.mark.parametrize("decoder_type", ["stateless", "lstm", "tied"])
def test_step_equals_forward(tiny_model_config, decoder_type):
    decoder = build_model(tiny_model_config(decoder_type), VOCAB).decoder.eval()
    y = labels(3, 6)
    with torch.no_grad():
        full = decoder(y, torch.full((3,), 7))
        state = decoder.init_state(3)
        rows = []
        for u in range(y.size(1)):
            out, state = decoder.step(y[:, u], state)
            rows.append(out)
    assert full.shape == (3, 7, decoder.output_dim)
    torch.testing.assert_close(torch.stack(rows, dim=1), full, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("decoder_type", ["stateless", "tied"])
def test_context_decoders_see_only_the_last_labels(tiny_model_config, decoder_type):
    decoder = build_model(tiny_model_config(decoder_type), VOCAB).decoder.eval()
    y = labels(1, 6)
    z = y.clone()
    z[0, 1:4] = (z[0, 1:4] % (VOCAB - 1)) + 1  # change labels 1..3, keep 4..6
    with torch.no_grad():
        a, b = decoder(y, torch.tensor([7])), decoder(z, torch.tensor([7]))
    # Row u depends on labels u-1, u (context_size 2): rows 5, 6 are unchanged, row 4 changed.
    torch.testing.assert_close(a[0, 5:], b[0, 5:])
    assert (a[0, 4] - b[0, 4]).abs().max() > 1e-4


@pytest.mark.parametrize("decoder_type", ["stateless", "lstm", "tied"])
def test_select_state_reindexes_hypotheses(tiny_model_config, decoder_type):
    decoder = build_model(tiny_model_config(decoder_type), VOCAB).decoder.eval()
    state = decoder.init_state(3)
    tokens = torch.tensor([0, 0, 0])
    with torch.no_grad():
        _, state = decoder.step(tokens, state)
        _, state = decoder.step(torch.tensor([3, 5, 7]), state)
        index = torch.tensor([2, 2, 0])
        picked = decoder.select_state(state, index)
        out_picked, _ = decoder.step(torch.tensor([1, 1, 1]), picked)
        out_all, _ = decoder.step(torch.tensor([1, 1, 1]), state)
    torch.testing.assert_close(out_picked, out_all[index])
    assert (out_all[0] - out_all[2]).abs().max() > 1e-5


def test_tied_decoder_shares_one_tensor_with_the_joiner_output_layer(tiny_model_config):
    model = build_model(tiny_model_config("tied"), VOCAB)
    assert model.decoder.embedding.weight is model.joiner.output_linear.weight
    assert model.decoder.output_dim == model.joiner.output_linear.in_features
    # Training the joiner's output layer moves the decoder's embedding with it.
    with torch.no_grad():
        model.joiner.output_linear.weight[3].add_(1.0)
    assert torch.equal(model.decoder.embedding.weight[3], model.joiner.output_linear.weight[3])
    names = [n for n, p in model.named_parameters() if p is model.joiner.output_linear.weight]
    assert len(names) == 1  # one parameter for the optimiser, not two copies


def test_stateless_blank_is_the_zero_embedding(tiny_model_config):
    decoder = build_model(tiny_model_config("stateless"), VOCAB).decoder
    assert torch.count_nonzero(decoder.embedding.weight[0]) == 0


def test_tied_decoder_survives_a_state_dict_round_trip(tiny_model_config):
    source = build_model(tiny_model_config("tied"), VOCAB)
    target = build_model(tiny_model_config("tied"), VOCAB)
    target.load_state_dict(source.state_dict())
    assert target.decoder.embedding.weight is target.joiner.output_linear.weight
    assert torch.equal(target.decoder.embedding.weight, source.joiner.output_linear.weight)
