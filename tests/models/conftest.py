"""Tiny model configs shared by the model tests (as factory fixtures)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kd.models import DecoderConfig, EncoderConfig, ModelConfig


def _tiny_encoder_config(**overrides) -> EncoderConfig:
    fields = dict(
        subsampling_channels=8, num_layers=2, d_model=32, num_heads=4, ffn_dim=64, conv_kernel=5, dropout=0.0
    )
    fields.update(overrides)
    return EncoderConfig(**fields)


def _tiny_model_config(decoder_type: str = "stateless", **encoder_overrides) -> ModelConfig:
    return ModelConfig(
        encoder=_tiny_encoder_config(**encoder_overrides),
        decoder=DecoderConfig(type=decoder_type, dim=24, context_size=2, embedding_dim=16, dropout=0.0),
        joiner_dim=24,
    )


@pytest.fixture
def tiny_encoder_config() -> Callable[..., EncoderConfig]:
    return _tiny_encoder_config


@pytest.fixture
def tiny_model_config() -> Callable[..., ModelConfig]:
    return _tiny_model_config


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only add overhead on a shared machine
    yield
    torch.set_num_threads(threads)
