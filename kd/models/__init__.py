"""Transducer models: Conformer encoder (full or causal/chunked), decoders, joiner, built from config."""

from kd.models.attention import RotarySelfAttention, chunk_attention_mask
from kd.models.build import build_decoder, build_model, count_parameters, format_parameter_counts
from kd.models.config import DecoderConfig, EncoderConfig, ModelConfig
from kd.models.conformer import ConformerBlock, ConformerEncoder, ConvModule, EncoderState, FeedForward
from kd.models.decoders import LSTMDecoder, StatelessDecoder, TiedReducedDecoder
from kd.models.joiner import Joiner
from kd.models.presets import PRESETS, preset
from kd.models.subsampling import Conv2dSubsampling, subsampled_lengths
from kd.models.transducer import Transducer, TransducerOutput

__all__ = [
    "PRESETS",
    "Conv2dSubsampling",
    "ConformerBlock",
    "ConformerEncoder",
    "ConvModule",
    "DecoderConfig",
    "EncoderConfig",
    "EncoderState",
    "FeedForward",
    "Joiner",
    "LSTMDecoder",
    "ModelConfig",
    "RotarySelfAttention",
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
