"""Model configs: plain dataclasses that YAML files map onto (see :mod:`kd.config`).

Every value is checked when the dataclass is built, so a bad size fails at config-load time with a message
that names the key and says how to fix it, not deep inside a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kd.config import ConfigError

DECODER_TYPES = ("stateless", "lstm", "tied")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass
class EncoderConfig:
    """A Conformer encoder: conv subsampling x4, then ``num_layers`` Conformer blocks.

    ``chunk_size`` and ``left_context_frames`` count encoder frames (after subsampling, 40 ms each).
    """

    num_features: int = 80  # fbank bins of the input
    subsampling_channels: int = 256  # channels of the two Conv2d layers of the subsampling
    num_layers: int = 12
    d_model: int = 256
    num_heads: int = 4
    ffn_dim: int = 1024
    conv_kernel: int = 31  # depthwise convolution kernel of the conv module (odd unless causal)
    dropout: float = 0.1
    rotary_base: float = 10000.0  # base of the rotary position encoding's frequencies
    # A LayerNorm at the end of every block (the Conformer paper's layout) instead of one after the last
    # block: much slower to learn alignments from scratch (see kd/models/conformer.py).
    block_norm: bool = False
    # A LayerNorm on the subsampling's output. Without it the front-end's output, fed straight into the
    # residual stream, grows to ~100x what each block adds within the first epoch on unnormalised fbank
    # (mean -4.8, std 4.9), so the blocks barely change the encoder output (see kd/models/subsampling.py).
    frontend_norm: bool = False
    # Streaming. A causal encoder uses causal convolutions and, at evaluation, chunked attention with
    # chunk_size frames per chunk and left_context_frames frames of history (-1 = all history).
    causal: bool = False
    chunk_size: int = -1  # -1 = full context (non-causal encoders must use -1)
    left_context_frames: int = -1
    # Dynamic chunk training (WeNet/icefall): each training batch draws its chunk size and left context
    # from these lists (-1 = full context / all history), so one model serves several latencies.
    dynamic_chunk_training: bool = False
    dynamic_chunk_sizes: list[int] = field(default_factory=lambda: [8, 16, 32, -1])
    dynamic_left_context_frames: list[int] = field(default_factory=lambda: [32, 64, -1])
    # Frame rate per block, as a divisor of the subsampled rate (Zipformer's middle stacks): e.g. [1, 2, 2,
    # 2, 2, 1] runs blocks 1-4 on 80 ms frames. Each run of equal divisors > 1 is one stack, taken down from
    # the 40 ms stream and added back to it (kd/models/downsampling.py). Empty: every block at 40 ms.
    block_downsampling: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("num_features", "subsampling_channels", "num_layers", "d_model", "num_heads", "ffn_dim"):
            value = getattr(self, name)
            _require(value > 0, f"encoder.{name}={value} must be a positive integer")
        _require(
            self.num_features >= 7,
            f"encoder.num_features={self.num_features}: the x4 conv subsampling needs at least 7 "
            "feature bins",
        )
        _require(
            self.d_model % self.num_heads == 0,
            f"encoder.d_model={self.d_model} is not divisible by encoder.num_heads={self.num_heads}; "
            "choose d_model as a multiple of num_heads",
        )
        _require(
            (self.d_model // self.num_heads) % 2 == 0,
            f"encoder.d_model / encoder.num_heads = {self.d_model // self.num_heads} must be even "
            "(rotary position encoding rotates pairs of dimensions); change d_model or num_heads",
        )
        _require(self.conv_kernel >= 1, f"encoder.conv_kernel={self.conv_kernel} must be >= 1")
        _require(
            self.causal or self.conv_kernel % 2 == 1,
            f"encoder.conv_kernel={self.conv_kernel} must be odd for a non-causal encoder "
            "(symmetric padding); use an odd kernel or set causal: true",
        )
        _require(0.0 <= self.dropout < 1.0, f"encoder.dropout={self.dropout} must be in [0, 1)")
        _require(self.rotary_base > 1.0, f"encoder.rotary_base={self.rotary_base} must be > 1")
        _check_chunk(self.chunk_size, "encoder.chunk_size")
        _check_left_context(self.left_context_frames, "encoder.left_context_frames")
        if self.causal:
            _require(
                self.chunk_size > 0,
                f"encoder.chunk_size={self.chunk_size}: a causal encoder streams in chunks; set chunk_size "
                "to a positive number of encoder frames (e.g. 16 = 640 ms)",
            )
        else:
            _require(
                self.chunk_size == -1,
                f"encoder.chunk_size={self.chunk_size} needs causal: true (a non-causal encoder has "
                "symmetric convolutions, so chunked attention would not make it streamable); "
                "set causal: true or chunk_size: -1",
            )
            _require(
                not self.dynamic_chunk_training,
                "encoder.dynamic_chunk_training: true needs causal: true",
            )
        if self.block_downsampling:
            _require(
                len(self.block_downsampling) == self.num_layers,
                f"encoder.block_downsampling has {len(self.block_downsampling)} entries for "
                f"encoder.num_layers={self.num_layers}; give one divisor per block (1 = the 40 ms rate)",
            )
            _require(
                all(factor >= 1 for factor in self.block_downsampling),
                f"encoder.block_downsampling={self.block_downsampling}: divisors must be integers >= 1",
            )
            _require(
                not self.causal or all(factor == 1 for factor in self.block_downsampling),
                f"encoder.block_downsampling={self.block_downsampling} needs causal: false (a low-rate "
                "frame would read frames after its chunk); use 1 for every block of a streaming encoder",
            )
        if self.dynamic_chunk_training:
            _require(
                len(self.dynamic_chunk_sizes) > 0 and len(self.dynamic_left_context_frames) > 0,
                "encoder.dynamic_chunk_sizes and encoder.dynamic_left_context_frames must not be empty "
                "when dynamic_chunk_training is true",
            )
            for i, c in enumerate(self.dynamic_chunk_sizes):
                _check_chunk(c, f"encoder.dynamic_chunk_sizes[{i}]")
            for i, c in enumerate(self.dynamic_left_context_frames):
                _check_left_context(c, f"encoder.dynamic_left_context_frames[{i}]")


def _check_chunk(value: int, name: str) -> None:
    _require(value == -1 or value > 0, f"{name}={value} must be -1 (full context) or a positive frame count")


def _check_left_context(value: int, name: str) -> None:
    _require(value >= -1, f"{name}={value} must be -1 (all history) or a frame count >= 0")


@dataclass
class DecoderConfig:
    """The prediction network.

    type: ``stateless`` (icefall: embedding + depthwise conv over the last ``context_size`` labels),
    ``lstm`` (embedding + LSTM), or ``tied`` (tied-and-reduced, METHODS.md (e): the last ``context_size``
    labels embedded with the joiner's output-layer weights, combined by a learned position-weighted
    average; its output size is the joiner dimension, so ``dim`` must equal ``joiner_dim``).
    """

    type: str = "stateless"
    dim: int = 512  # output size (stateless: embedding size; lstm: hidden size; tied: = joiner_dim)
    context_size: int = 2  # labels of history (stateless, tied)
    embedding_dim: int = 256  # lstm only
    num_layers: int = 1  # lstm only
    dropout: float = 0.1  # lstm only (on the embedding and between LSTM layers)

    def __post_init__(self) -> None:
        _require(
            self.type in DECODER_TYPES,
            f"decoder.type={self.type!r} is not one of {list(DECODER_TYPES)}",
        )
        _require(self.dim > 0, f"decoder.dim={self.dim} must be a positive integer")
        _require(self.context_size >= 1, f"decoder.context_size={self.context_size} must be >= 1")
        _require(self.embedding_dim > 0, f"decoder.embedding_dim={self.embedding_dim} must be positive")
        _require(self.num_layers >= 1, f"decoder.num_layers={self.num_layers} must be >= 1")
        _require(0.0 <= self.dropout < 1.0, f"decoder.dropout={self.dropout} must be in [0, 1)")


@dataclass
class SecondPassConfig:
    """The second pass of a cascaded model (METHODS.md (e)): non-causal Conformer blocks on the causal
    encoder's output, sharing the decoder and joiner with the first pass.

    ``d_model`` may differ from the encoder's: linear projections then map the causal frames in and the
    refined frames back, so both passes feed the one joiner (the non-causal budget can stay fixed while the
    causal encoder shrinks). The training loss is ``first_pass_weight * loss_1 + second_pass_weight *
    loss_2``; weights summing to 1 keep the per-frame loss on the scale of a one-pass model, so its learning
    rates carry over.
    """

    num_layers: int = 2
    d_model: int = 256
    num_heads: int = 4
    ffn_dim: int = 1024
    conv_kernel: int = 31  # odd: the second pass is non-causal (symmetric padding)
    dropout: float = 0.1
    first_pass_weight: float = 0.5
    second_pass_weight: float = 0.5

    def __post_init__(self) -> None:
        for name in ("num_layers", "d_model", "num_heads", "ffn_dim", "conv_kernel"):
            value = getattr(self, name)
            _require(value > 0, f"second_pass.{name}={value} must be a positive integer")
        _require(
            self.d_model % self.num_heads == 0 and (self.d_model // self.num_heads) % 2 == 0,
            f"second_pass.d_model={self.d_model} must be a multiple of 2 * second_pass.num_heads="
            f"{2 * self.num_heads} (even head size for the rotary position encoding)",
        )
        _require(
            self.conv_kernel % 2 == 1,
            f"second_pass.conv_kernel={self.conv_kernel} must be odd (the second pass is non-causal)",
        )
        _require(0.0 <= self.dropout < 1.0, f"second_pass.dropout={self.dropout} must be in [0, 1)")
        _require(
            self.first_pass_weight >= 0.0
            and self.second_pass_weight >= 0.0
            and self.first_pass_weight + self.second_pass_weight > 0.0,
            f"second_pass.first_pass_weight={self.first_pass_weight} and second_pass_weight="
            f"{self.second_pass_weight} must be >= 0 and not both 0",
        )


@dataclass
class ModelConfig:
    """A transducer: encoder, decoder (prediction network) and joiner of dimension ``joiner_dim``.

    With ``second_pass`` set it is a cascaded two-pass model (:mod:`kd.models.cascaded`): ``encoder`` is its
    causal first pass; None (the default) is a one-pass transducer.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    joiner_dim: int = 512
    second_pass: SecondPassConfig | None = None
    # An auxiliary CTC output layer on the encoder (trained when loss.ctc_scale > 0). Without it the encoder
    # of a transducer trained from scratch on little data is slow to learn where tokens are in time.
    ctc_head: bool = False

    def __post_init__(self) -> None:
        _require(self.joiner_dim > 0, f"joiner_dim={self.joiner_dim} must be a positive integer")
        if self.second_pass is not None:
            _require(
                self.encoder.causal,
                "second_pass needs a causal encoder (the streaming first pass of the cascade); set "
                "encoder.causal: true with a chunk_size, or remove second_pass",
            )
        if self.decoder.type == "tied":
            _require(
                self.decoder.dim == self.joiner_dim,
                f"decoder.dim={self.decoder.dim} must equal joiner_dim={self.joiner_dim} for a tied decoder "
                "(its embedding is the joiner's output layer); set decoder.dim to the joiner_dim",
            )
