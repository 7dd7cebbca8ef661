"""Transducer models: Conformer encoder (full or causal/chunked), decoders, joiner, the cascaded two-pass
model, built from config."""

from kd.models.attention import RotarySelfAttention, chunk_attention_mask
from kd.models.build import build_decoder, build_model, count_parameters, format_parameter_counts
from kd.models.cascaded import (
    CascadedEncoder,
    CascadedOutput,
    CascadedTransducer,
    FirstPass,
    SecondPassEncoder,
)
from kd.models.config import DecoderConfig, EncoderConfig, ModelConfig, SecondPassConfig
from kd.models.conformer import ConformerBlock, ConformerEncoder, ConvModule, EncoderState, FeedForward
from kd.models.decoders import LSTMDecoder, StatelessDecoder, TiedReducedDecoder
from kd.models.joiner import Joiner
from kd.models.presets import PRESETS, preset
from kd.models.subsampling import Conv2dSubsampling, subsampled_lengths
from kd.models.transducer import Transducer, TransducerOutput

__all__ = [
    "PRESETS",
    "CascadedEncoder",
    "CascadedOutput",
    "CascadedTransducer",
    "Conv2dSubsampling",
    "ConformerBlock",
    "ConformerEncoder",
    "ConvModule",
    "DecoderConfig",
    "EncoderConfig",
    "EncoderState",
    "FeedForward",
    "FirstPass",
    "Joiner",
    "LSTMDecoder",
    "ModelConfig",
    "RotarySelfAttention",
    "SecondPassConfig",
    "SecondPassEncoder",
    "StatelessDecoder",
    "TiedReducedDecoder",
    "Transducer",
    "TransducerOutput",
    "build_decoder",
    "build_model",
    "chunk_attention_mask",
    "count_parameters",
    "format_parameter_counts",
    "preset",
    "subsampled_lengths",
]
