"""Model configs: bad values are clear errors; YAML round trip through kd.config."""

from __future__ import annotations

import pytest

from kd.config import ConfigError, from_dict, load_yaml, save_yaml, to_dict
from kd.models import DecoderConfig, EncoderConfig, ModelConfig, build_model, preset


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(d_model=250, num_heads=4), "not divisible by encoder.num_heads"),
        (dict(d_model=36, num_heads=12), "must be even"),
        (dict(conv_kernel=4), "must be odd"),
        (dict(chunk_size=8), "needs causal: true"),
        (dict(causal=True), "chunk_size=-1: a causal encoder streams"),
        (dict(causal=True, chunk_size=0), "chunk_size=0 must be -1"),
        (dict(causal=True, chunk_size=4, left_context_frames=-2), "left_context_frames=-2"),
        (dict(dynamic_chunk_training=True), "needs causal: true"),
        (
            dict(causal=True, chunk_size=4, dynamic_chunk_training=True, dynamic_chunk_sizes=[]),
            "must not be empty",
        ),
        (
            dict(causal=True, chunk_size=4, dynamic_chunk_training=True, dynamic_chunk_sizes=[0]),
            "sizes\\[0\\]",
        ),
        (dict(num_layers=0), "num_layers=0"),
        (dict(dropout=1.0), "dropout=1.0"),
        (dict(num_features=5), "at least 7 feature bins"),
        (dict(num_layers=3, block_downsampling=[1, 2]), "2 entries for encoder.num_layers=3"),
        (dict(num_layers=2, block_downsampling=[1, 0]), "divisors must be integers >= 1"),
        (
            dict(num_layers=2, causal=True, chunk_size=4, conv_kernel=4, block_downsampling=[1, 2]),
            "needs causal: false",
        ),
    ],
)
def test_bad_encoder_values_are_named(fields, message):
    with pytest.raises(ConfigError, match=message):
        EncoderConfig(**fields)


def test_bad_decoder_values_are_named():
    with pytest.raises(ConfigError, match="decoder.type='gru' is not one of"):
        DecoderConfig(type="gru")
    with pytest.raises(ConfigError, match="context_size=0"):
        DecoderConfig(context_size=0)
    with pytest.raises(ConfigError, match="must equal joiner_dim=256 for a tied decoder"):
        ModelConfig(decoder=DecoderConfig(type="tied", dim=512), joiner_dim=256)


def test_causal_chunked_config_is_accepted():
    cfg = EncoderConfig(causal=True, chunk_size=16, left_context_frames=64, conv_kernel=4)
    assert cfg.causal and cfg.chunk_size == 16


def test_vocab_size_must_hold_blank_and_a_token():
    with pytest.raises(ValueError, match="vocab_size=1"):
        build_model(ModelConfig(), vocab_size=1)


def test_yaml_round_trip_and_unknown_key(tmp_path):
    cfg = preset("synth_student", causal=True)
    path = tmp_path / "model.yaml"
    save_yaml(cfg, path)
    assert load_yaml(ModelConfig, path) == cfg
    data = to_dict(cfg)
    data["encoder"]["num_layer"] = 3
    with pytest.raises(ConfigError, match="num_layer"):
        from_dict(ModelConfig, data)
