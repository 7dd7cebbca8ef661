"""Parameter counts: count_parameters against closed-form formulas, and the presets' size targets."""

from __future__ import annotations

import itertools

import pytest
import torch

from kd.models import ModelConfig, build_model, count_parameters, format_parameter_counts, preset


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def encoder_formula(cfg) -> int:
    d, f, k, c = cfg.d_model, cfg.ffn_dim, cfg.conv_kernel, cfg.subsampling_channels
    freq = ((cfg.num_features - 1) // 2 - 1) // 2
    subsampling = (9 * c + c) + (9 * c * c + c) + linear(c * freq, d)
    norm = 2 * d
    ffn = norm + linear(d, f) + linear(f, d)
    mhsa = norm + linear(d, 3 * d) + linear(d, d)
    conv = norm + linear(d, 2 * d) + (d * k + d) + norm + linear(d, d)
    block = 2 * ffn + mhsa + conv
    # A frame-rate bridge per stack of low-rate blocks: a weight per frame it merges, a scale per channel.
    stacks = [factor for factor, _ in itertools.groupby(cfg.block_downsampling)]
    bridges = sum(factor + d for factor in stacks if factor > 1)
    return subsampling + cfg.num_layers * block + bridges + norm  # one LayerNorm after the last block


def decoder_formula(cfg: ModelConfig, vocab: int) -> int:
    dec = cfg.decoder
    if dec.type == "stateless":
        return vocab * dec.dim + (dec.dim * dec.context_size if dec.context_size > 1 else 0)
    if dec.type == "lstm":
        e, h = dec.embedding_dim, dec.dim
        lstm = sum(4 * h * ((e if i == 0 else h) + h) + 8 * h for i in range(dec.num_layers))
        return vocab * e + lstm
    return dec.context_size * dec.dim + 2 * dec.dim  # tied: the embedding is the joiner's


def model_formula(cfg: ModelConfig, vocab: int) -> dict[str, int]:
    d_enc, d_dec, j = cfg.encoder.d_model, cfg.decoder.dim, cfg.joiner_dim
    counts = {
        "encoder": encoder_formula(cfg.encoder),
        "joiner": linear(d_enc, j) + linear(d_dec, j) + linear(j, vocab),
        "decoder": decoder_formula(cfg, vocab),
        "simple_am_proj": linear(d_enc, vocab),
        "simple_lm_proj": linear(d_dec, vocab),
        **({"ctc_output": linear(cfg.encoder.d_model, vocab)} if cfg.ctc_head else {}),
    }
    counts["total"] = sum(counts.values())
    return counts


@pytest.mark.parametrize("decoder_type", ["stateless", "lstm", "tied"])
def test_counts_match_the_formula(tiny_model_config, decoder_type):
    cfg = tiny_model_config(decoder_type)
    counts = count_parameters(build_model(cfg, 13))
    expected = model_formula(cfg, 13)
    assert {k: counts[k] for k in expected} == expected
    assert counts["total"] == sum(v for k, v in counts.items() if k not in ("total", "nonzero"))


def test_nonzero_counts_pruned_weights(tiny_model_config):
    model = build_model(tiny_model_config(), 13)
    before = count_parameters(model)["nonzero"]
    with torch.no_grad():
        model.encoder.layers[0].ff.net[1].weight[:4].zero_()  # 4 rows of the (ffn_dim=64, d_model=32) weight
    assert count_parameters(model)["nonzero"] == before - 4 * 32
    assert "nonzero" in format_parameter_counts(count_parameters(model))


# (preset, kwargs, size target in parameters, for a 500-token vocabulary)
PRESET_TARGETS = [
    ("synth_teacher", {}, (5e6, 8e6)),
    ("synth_student", {}, (1e6, 2e6)),
    ("synth_student", {"causal": True}, (1e6, 2e6)),
    ("librispeech_teacher", {}, (70e6, 100e6)),
    ("librispeech_student", {}, (8e6, 12e6)),
    ("librispeech_student", {"causal": True}, (8e6, 12e6)),
]


@pytest.mark.parametrize("name,kwargs,target", PRESET_TARGETS)
def test_presets_are_in_their_size_targets(name, kwargs, target):
    cfg = preset(name, **kwargs)
    counts = count_parameters(build_model(cfg, 500))
    assert counts == {**model_formula(cfg, 500), "nonzero": counts["nonzero"]}
    assert target[0] <= counts["total"] <= target[1], format_parameter_counts(counts)


def test_unknown_preset_is_named():
    with pytest.raises(KeyError, match="unknown model preset 'tiny'"):
        preset("tiny")
