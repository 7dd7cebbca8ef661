"""The transducer split into the three graphs a runtime drives (sherpa-onnx's split), as plain modules.

    encoder            (x (N, T, F), x_lens (N,)) -> (encoder_out (N, T', J), encoder_out_lens (N,))
    streaming encoder  (x (N, W, F), x_lens (N,), *states) -> (encoder_out (N, C, J), encoder_out_lens (N,),
                       *new_states)                    causal encoders and cascaded models only
    decoder            context decoders: y (N, c) the last c labels -> decoder_out (N, J)
                       LSTM decoder: (y (N, 1), h, c) -> (decoder_out (N, J), new h, new c)
    joiner             (encoder_out (N, J), decoder_out (N, J)) -> logits (N, V)

The encoder and decoder outputs are already projected by the joiner's ``encoder_proj`` / ``decoder_proj``
(J = joiner dim), so a search projects each encoder frame and each decoder output once, and the joiner
graph is only ``output_linear(tanh(e + d))``. Every input and output is a plain tensor with a fixed
position, so the modules trace into ONNX or TorchScript as they are.

A cascaded model (:mod:`kd.models.cascaded`) has both encoders: ``encoder`` is its final (second,
non-causal) pass and ``encoder_streaming`` its causal first pass; decoder and joiner are shared as in the
model.
"""

from __future__ import annotations

import torch
from torch import nn

from kd.models.cascaded import CascadedEncoder
from kd.models.conformer import ConformerEncoder, EncoderState
from kd.models.decoders import LSTMDecoder
from kd.models.transducer import Transducer


def streaming_encoder(model: Transducer) -> ConformerEncoder | None:
    """The causal encoder that streams: the model's own, a cascaded model's first pass, or None."""
    if isinstance(model.encoder, CascadedEncoder):
        return model.encoder.first_pass
    if isinstance(model.encoder, ConformerEncoder) and model.encoder.causal:
        return model.encoder
    return None


def conformer_encoder(model: Transducer) -> ConformerEncoder:
    """The Conformer encoder reading the features (a cascaded model's first pass)."""
    encoder = model.encoder.first_pass if isinstance(model.encoder, CascadedEncoder) else model.encoder
    if not isinstance(encoder, ConformerEncoder):
        raise ValueError(f"export needs a Conformer encoder, got {type(encoder).__name__}")
    return encoder


class EncoderModule(nn.Module):
    """Whole-utterance encoder (with the configured chunked mask for a causal encoder) + ``encoder_proj``."""

    input_names = ["x", "x_lens"]
    output_names = ["encoder_out", "encoder_out_lens"]
    dynamic_axes = {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T_out"}}

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.encoder_proj = model.joiner.encoder_proj
        self.num_features = conformer_encoder(model).config.num_features

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, T, F) features, x_lens: (N,) int64. Returns (N, T', J) and (N,) int64."""
        encoder_out, encoder_out_lens = self.encoder(x, x_lens)
        return self.encoder_proj(encoder_out), encoder_out_lens

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """Two utterances of different lengths: the trace must take the padding-mask path, which is also
        exact for a batch without padding (the mask then allows everything)."""
        return torch.zeros(2, 67, self.num_features), torch.tensor([67, 45], dtype=torch.int64)


class StreamingEncoderModule(nn.Module):
    """One chunk of :meth:`ConformerEncoder.streaming_forward` + ``encoder_proj``, states as flat tensors.

    States, in this order (i = 0 .. num_layers - 1): ``cached_key_i`` and ``cached_value_i`` (N, H, L, Dh),
    ``cached_conv_i`` (N, D, kernel - 1), then ``processed_frames`` (N,) int64. With a bounded left context
    L is always ``left_context_frames``: the initial state holds that many zero slots, which
    ``streaming_forward`` treats as frames before the utterance (masked out), and each chunk keeps the last
    L keys, so every state has a fixed shape. With all history (``left_context_frames`` = -1) L starts at 0
    and grows by ``chunk_size`` per chunk.
    """

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        encoder = streaming_encoder(model)
        if encoder is None:
            raise ValueError("a streaming encoder needs a causal encoder (encoder.causal: true)")
        self.encoder = encoder
        self.encoder_proj = model.joiner.encoder_proj
        self.num_layers = encoder.config.num_layers
        self.window = encoder.chunk_size * encoder.subsampling_factor + encoder.streaming_pad_frames

    @property
    def state_names(self) -> list[str]:
        layers = range(self.num_layers)
        return [
            *(f"cached_key_{i}" for i in layers),
            *(f"cached_value_{i}" for i in layers),
            *(f"cached_conv_{i}" for i in layers),
            "processed_frames",
        ]

    @property
    def input_names(self) -> list[str]:
        return ["x", "x_lens", *self.state_names]

    @property
    def output_names(self) -> list[str]:
        return ["encoder_out", "encoder_out_lens", *(f"new_{name}" for name in self.state_names)]

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes: dict[str, dict[int, str]] = {name: {0: "N"} for name in (*self.input_names, *self.output_names)}
        if self.encoder.left_context_frames < 0:
            for i in range(self.num_layers):
                for name in (f"cached_key_{i}", f"cached_value_{i}"):
                    axes[name][2] = "L"
                    axes[f"new_{name}"][2] = "L_out"
        return axes

    def init_states(self, batch_size: int, cached_frames: int | None = None) -> list[torch.Tensor]:
        """The state before the first chunk (``cached_frames`` overrides the cache length, for tracing)."""
        cfg = self.encoder.config
        if cached_frames is None:
            cached_frames = max(self.encoder.left_context_frames, 0)
        head_dim = cfg.d_model // cfg.num_heads
        key = torch.zeros(batch_size, cfg.num_heads, cached_frames, head_dim)
        conv = torch.zeros(batch_size, cfg.d_model, cfg.conv_kernel - 1)
        n = self.num_layers
        return [
            *(key.clone() for _ in range(2 * n)),
            *(conv.clone() for _ in range(n)),
            torch.zeros(batch_size, dtype=torch.int64),
        ]

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, *states: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """x: (N, W, F) one window, x_lens: (N,) valid frames in it, states as :attr:`state_names`.

        Returns encoder_out (N, C, J), encoder_out_lens (N,) and the new states in the same order.
        """
        n = self.num_layers
        state = EncoderState(
            keys=list(states[:n]),
            values=list(states[n : 2 * n]),
            conv=list(states[2 * n : 3 * n]),
            processed_frames=states[3 * n],
        )
        out, out_lens, new = self.encoder.streaming_forward(x, x_lens, state)
        return (self.encoder_proj(out), out_lens, *new.keys, *new.values, *new.conv, new.processed_frames)

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """A full window and a part-filled one; with all history, a non-empty cache, so the trace keeps
        the concatenation with the cached keys."""
        cached = None if self.encoder.left_context_frames >= 0 else self.encoder.chunk_size
        states = self.init_states(2, cached)
        if cached is not None:
            states[-1] += cached
        x = torch.zeros(2, self.window, self.encoder.config.num_features)
        return (x, torch.tensor([self.window, self.window - 5], dtype=torch.int64), *states)


class ContextDecoderModule(nn.Module):
    """Stateless / tied decoder + ``decoder_proj``: the last ``context_size`` labels -> one output."""

    input_names = ["y"]
    output_names = ["decoder_out"]
    dynamic_axes = {"y": {0: "N"}, "decoder_out": {0: "N"}}

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.decoder_proj = model.joiner.decoder_proj

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y: (N, c) int64 labels, oldest first (blank_id before the sentence start). Returns (N, J)."""
        return self.decoder_proj(self.decoder.contexts(y)[:, 0])

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(3, self.decoder.context_size, dtype=torch.int64),)


class LSTMDecoderModule(nn.Module):
    """LSTM decoder + ``decoder_proj``: one step from the last label and the state (h, c)."""

    input_names = ["y", "h", "c"]
    output_names = ["decoder_out", "new_h", "new_c"]
    dynamic_axes = {name: {1: "N"} for name in ("h", "c", "new_h", "new_c")} | {
        "y": {0: "N"},
        "decoder_out": {0: "N"},
    }

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        if not isinstance(model.decoder, LSTMDecoder):
            raise ValueError(f"expected an LSTMDecoder, got {type(model.decoder).__name__}")
        self.decoder = model.decoder
        self.decoder_proj = model.joiner.decoder_proj

    def forward(
        self, y: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """y: (N, 1) int64 the last label; h, c: (num_layers, N, H). Returns (N, J), new h, new c."""
        out, (h, c) = self.decoder.step(y[:, 0], (h, c))
        return self.decoder_proj(out), h, c

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        h, c = self.decoder.init_state(3)
        return torch.zeros(3, 1, dtype=torch.int64), h, c


class JoinerModule(nn.Module):
    """``output_linear(tanh(encoder_out + decoder_out))`` on projected inputs."""

    input_names = ["encoder_out", "decoder_out"]
    output_names = ["logits"]
    dynamic_axes = {name: {0: "N"} for name in ("encoder_out", "decoder_out", "logits")}

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.joiner = model.joiner
        self.joiner_dim = model.joiner.output_linear.in_features

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        """encoder_out, decoder_out: (N, J). Returns logits (N, V)."""
        return self.joiner(encoder_out, decoder_out, project_input=False)

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        return torch.zeros(3, self.joiner_dim), torch.zeros(3, self.joiner_dim)


def decoder_module(model: Transducer) -> ContextDecoderModule | LSTMDecoderModule:
    """The decoder graph that fits the model's decoder type."""
    if isinstance(model.decoder, LSTMDecoder):
        return LSTMDecoderModule(model)
    return ContextDecoderModule(model)


def export_modules(model: Transducer) -> dict[str, nn.Module]:
    """``{"encoder", ["encoder_streaming",] "decoder", "joiner"}``: the graphs to export, in eval mode."""
    modules: dict[str, nn.Module] = {"encoder": EncoderModule(model)}
    if streaming_encoder(model) is not None:
        modules["encoder_streaming"] = StreamingEncoderModule(model)
    modules["decoder"] = decoder_module(model)
    modules["joiner"] = JoinerModule(model)
    return {name: module.eval() for name, module in modules.items()}
