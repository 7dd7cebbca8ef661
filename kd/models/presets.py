"""Model size presets: teacher and student for the synthetic corpus and for LibriSpeech, and a cascaded
two-pass teacher and student for the synthetic corpus.

Each preset is a :class:`ModelConfig`; ``kd.config.to_dict(preset(name))`` gives the YAML form. The
parameter counts in the comments are for a 500-token vocabulary (``count_parameters``; they change with the
vocabulary through the embedding, the joiner output and the simple projections).
"""

from __future__ import annotations

from collections.abc import Callable

from kd.models.config import DecoderConfig, EncoderConfig, ModelConfig, SecondPassConfig

# The synthetic-corpus models train without dropout: on the CPU its masks cost about a third of a training
# step, and the models underfit the 2-hour corpus anyway (egs/synth/RESULTS.md).
SYNTH_DROPOUT = 0.0


def synth_teacher() -> ModelConfig:
    """Synthetic-corpus teacher, ~6 M parameters: small enough to train on 2 CPU cores in minutes; its middle
    blocks run at 80 and 160 ms (1.6x shorter epochs on the CPU)."""
    return ModelConfig(
        encoder=EncoderConfig(
            subsampling_channels=64,
            num_layers=6,
            d_model=192,
            num_heads=4,
            ffn_dim=768,
            conv_kernel=15,
            dropout=SYNTH_DROPOUT,
            block_downsampling=[1, 2, 4, 4, 2, 1],
        ),
        decoder=DecoderConfig(type="stateless", dim=256, context_size=5),
        joiner_dim=256,
        ctc_head=True,
    )


def synth_student(causal: bool = False) -> ModelConfig:
    """Synthetic-corpus student, ~1.9 M parameters; ``causal``: a streaming student (640 ms chunks)."""
    return ModelConfig(
        encoder=EncoderConfig(
            subsampling_channels=32,
            num_layers=4,
            d_model=128,
            num_heads=4,
            ffn_dim=512,
            conv_kernel=15,
            dropout=SYNTH_DROPOUT,
            causal=causal,
            chunk_size=16 if causal else -1,
            left_context_frames=64 if causal else -1,
        ),
        decoder=DecoderConfig(type="stateless", dim=128, context_size=5),
        joiner_dim=128,
        ctc_head=True,
    )


def synth_cascaded_teacher() -> ModelConfig:
    """Synthetic-corpus cascaded teacher (METHODS.md (e)), ~7.7 M parameters: the synth teacher's encoder made
    causal (640 ms chunks) as the first pass, two non-causal blocks of the same size as the second pass."""
    return ModelConfig(
        encoder=EncoderConfig(
            subsampling_channels=64,
            num_layers=6,
            d_model=192,
            num_heads=4,
            ffn_dim=768,
            conv_kernel=15,
            dropout=SYNTH_DROPOUT,
            causal=True,
            chunk_size=16,
            left_context_frames=64,
        ),
        decoder=DecoderConfig(type="stateless", dim=256, context_size=2),
        joiner_dim=256,
        second_pass=_synth_second_pass(),
    )


def synth_cascaded_student() -> ModelConfig:
    """Synthetic-corpus cascaded student, ~3.8 M parameters (~49% of the cascaded teacher), by the paper's
    compression rule: the non-causal second pass keeps the teacher's budget, the causal encoder shrinks
    (4 layers of 128 instead of 6 of 192) and the decoder becomes tied-and-reduced."""
    return ModelConfig(
        encoder=EncoderConfig(
            subsampling_channels=32,
            num_layers=4,
            d_model=128,
            num_heads=4,
            ffn_dim=512,
            conv_kernel=15,
            dropout=SYNTH_DROPOUT,
            causal=True,
            chunk_size=16,
            left_context_frames=64,
        ),
        decoder=DecoderConfig(type="tied", dim=256, context_size=2),
        joiner_dim=256,
        second_pass=_synth_second_pass(),
    )


def _synth_second_pass() -> SecondPassConfig:
    return SecondPassConfig(
        num_layers=2, d_model=192, num_heads=4, ffn_dim=768, conv_kernel=15, dropout=SYNTH_DROPOUT
    )


def librispeech_teacher() -> ModelConfig:
    """LibriSpeech teacher, ~80 M parameters (icefall's 12-layer 512-dim Conformer transducer)."""
    return ModelConfig(
        encoder=EncoderConfig(
            subsampling_channels=512, num_layers=12, d_model=512, num_heads=8, ffn_dim=2048, conv_kernel=31
        ),
        decoder=DecoderConfig(type="stateless", dim=512, context_size=2),
        joiner_dim=512,
    )


def librispeech_student(causal: bool = False) -> ModelConfig:
    """LibriSpeech student, ~9 M parameters (Conformer-S-like); ``causal``: streaming (640 ms chunks)."""
    return ModelConfig(
        encoder=EncoderConfig(
            subsampling_channels=144,
            num_layers=16,
            d_model=144,
            num_heads=4,
            ffn_dim=576,
            conv_kernel=31,
            causal=causal,
            chunk_size=16 if causal else -1,
            left_context_frames=64 if causal else -1,
        ),
        decoder=DecoderConfig(type="stateless", dim=320, context_size=2),
        joiner_dim=320,
    )


PRESETS: dict[str, Callable[..., ModelConfig]] = {
    "synth_teacher": synth_teacher,
    "synth_student": synth_student,
    "synth_cascaded_teacher": synth_cascaded_teacher,
    "synth_cascaded_student": synth_cascaded_student,
    "librispeech_teacher": librispeech_teacher,
    "librispeech_student": librispeech_student,
}


def preset(name: str, **kwargs: bool) -> ModelConfig:
    """The preset called ``name`` (one of PRESETS); kwargs such as causal=True go to the preset function."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](**kwargs)
