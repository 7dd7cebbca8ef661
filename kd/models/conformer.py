"""Conformer encoder (Gulati et al. 2020) with a causal/chunked mode that streams exactly.

Block: x + FFN/2 -> + MHSA -> + conv module -> + FFN/2 (pre-norm residual branches, macaron FFNs); one
LayerNorm after the last block. Positions are rotary (see :mod:`kd.models.attention`). The conv module
normalises with LayerNorm, not BatchNorm, so an output frame never depends on other utterances or frames
through batch statistics.

There is no LayerNorm at the end of each block (the Conformer paper has one): renormalising the residual
stream after every block lets the frame-independent part that attention and the FFNs add early in training
swamp the frame-specific part, block after block, and a 6-block encoder trained from scratch on a small
corpus then takes many times longer to learn where tokens are in time. Measured on 24 utterances of the
synthetic corpus with a CTC loss alone (``python -m kd.bin.overfit``, egs/synth/RESULTS.md).
``block_norm: true`` restores the per-block norms.

Causal mode: the depthwise convolution is left-padded (sees only the past), and attention is chunked (a
frame sees its own chunk and ``left_context_frames`` before it). :meth:`ConformerEncoder.streaming_forward`
then reproduces the whole-utterance forward chunk by chunk, carrying key/value and convolution caches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kd.models.attention import RotarySelfAttention, chunk_attention_mask
from kd.models.config import EncoderConfig
from kd.models.downsampling import FrameRateBridge, block_stacks
from kd.models.subsampling import (
    RECEPTIVE_FIELD,
    SUBSAMPLING_FACTOR,
    Conv2dSubsampling,
    subsampled_lengths,
)


class FeedForward(nn.Module):
    """LayerNorm -> Linear(D, F) -> SiLU -> dropout -> Linear(F, D)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, ffn_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """Pointwise conv + GLU -> depthwise conv -> LayerNorm -> SiLU -> pointwise conv.

    Causal: the depthwise conv sees the current and the kernel - 1 previous frames; those previous frames
    come from zero padding (whole utterance) or from a cache (streaming), which are the same thing at t = 0.
    """

    def __init__(self, d_model: int, kernel_size: int, causal: bool) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.causal = causal
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.activation = nn.SiLU()
        self.pointwise_out = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, pad_mask: torch.Tensor, cache: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            x: (B, T, D).
            pad_mask: (B, T) bool, True on padding frames (zeroed so they never leak into real frames).
            cache: (B, D, kernel - 1) the previous frames' depthwise-conv inputs (causal only).
        Returns:
            (B, T, D), and the new cache (B, D, kernel - 1) when causal (None otherwise).
        """
        h = nn.functional.glu(self.pointwise_in(x), dim=-1)
        h = h.masked_fill(pad_mask.unsqueeze(-1), 0.0).transpose(1, 2)  # (B, D, T)
        new_cache = None
        if self.causal:
            if cache is None:
                cache = h.new_zeros(h.size(0), h.size(1), self.kernel_size - 1)
            h = torch.cat((cache, h), dim=2)
            new_cache = h[:, :, h.size(2) - (self.kernel_size - 1) :]
        else:
            pad = (self.kernel_size - 1) // 2
            h = nn.functional.pad(h, (pad, pad))
        h = self.depthwise(h).transpose(1, 2)  # (B, T, D)
        return self.pointwise_out(self.activation(self.norm(h))), new_cache


class ConformerBlock(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ff_macaron = FeedForward(d, config.ffn_dim, config.dropout)
        self.norm_mhsa = nn.LayerNorm(d)
        self.mhsa = RotarySelfAttention(d, config.num_heads, config.dropout, config.rotary_base)
        self.norm_conv = nn.LayerNorm(d)
        self.conv = ConvModule(d, config.conv_kernel, config.causal)
        self.ff = FeedForward(d, config.ffn_dim, config.dropout)
        self.norm_out = nn.LayerNorm(d) if config.block_norm else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        attn_mask: torch.Tensor | None,
        pad_mask: torch.Tensor,
        attn_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        conv_cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x: (B, T, D). Returns (B, T, D), keys and values (B, H, L + T, Dh), conv cache (or None).

        See :class:`RotarySelfAttention` and :class:`ConvModule` for the other arguments.
        """
        x = x + 0.5 * self.dropout(self.ff_macaron(x))
        attn, keys, values = self.mhsa(self.norm_mhsa(x), positions, attn_mask, attn_cache)
        x = x + self.dropout(attn)
        conv, conv_cache = self.conv(self.norm_conv(x), pad_mask, conv_cache)
        x = x + self.dropout(conv)
        x = x + 0.5 * self.dropout(self.ff(x))
        if self.norm_out is not None:
            x = self.norm_out(x)
        return x, keys, values, conv_cache


@dataclass
class EncoderState:
    """Streaming state of a causal :class:`ConformerEncoder`, one entry per layer.

    Attributes:
        keys: (B, H, L, Dh) rotated attention keys of the last L frames (L <= left_context_frames).
        values: (B, H, L, Dh) attention values of the same frames.
        conv: (B, D, kernel - 1) depthwise-conv inputs of the last kernel - 1 frames.
        processed_frames: (B,) int64 encoder frames already consumed (the next frame's position).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    conv: list[torch.Tensor]
    processed_frames: torch.Tensor


class ConformerEncoder(nn.Module):
    """Conv subsampling x4 + Conformer blocks: (B, T, F) fbank -> (B, T', d_model), T' = ((T-1)//2-1)//2.

    With ``block_downsampling`` some blocks run at a lower frame rate, in stacks bridged to and from the
    40 ms stream (:mod:`kd.models.downsampling`); the output stays at 40 ms.

    Attributes (the model interface): output_dim, subsampling_factor, causal, chunk_size,
    left_context_frames, and streaming_pad_frames: a streaming caller feeds windows of
    ``chunk_size * 4 + streaming_pad_frames`` feature frames with a hop of ``chunk_size * 4`` (the last
    ``streaming_pad_frames`` of a window are read again at the start of the next one), icefall style.
    """

    subsampling_factor = SUBSAMPLING_FACTOR
    streaming_pad_frames = RECEPTIVE_FIELD - SUBSAMPLING_FACTOR

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.output_dim = config.d_model
        self.causal = config.causal
        self.chunk_size = config.chunk_size
        self.left_context_frames = config.left_context_frames
        self.subsampling = Conv2dSubsampling(
            config.num_features, config.subsampling_channels, config.d_model, config.frontend_norm
        )
        self.input_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(ConformerBlock(config) for _ in range(config.num_layers))
        self.stacks = block_stacks(config.block_downsampling, config.num_layers)
        # One bridge per stack below the 40 ms rate, keyed by the stack's first block.
        self.bridges = nn.ModuleDict(
            {
                str(start): FrameRateBridge(config.d_model, factor)
                for start, _, factor in self.stacks
                if factor > 1
            }
        )
        self.norm_out = nn.LayerNorm(config.d_model)

    @staticmethod
    def output_lengths(x_lens: torch.Tensor) -> torch.Tensor:
        """(B,) feature-frame counts -> (B,) encoder-frame counts, without running the model."""
        return subsampled_lengths(x_lens)

    def _chunking(self) -> tuple[int, int]:
        """(chunk_size, left_context_frames) for this forward: random per batch in dynamic chunk training."""
        cfg = self.config
        if not (self.training and cfg.dynamic_chunk_training):
            return self.chunk_size, self.left_context_frames
        chunk = cfg.dynamic_chunk_sizes[int(torch.randint(len(cfg.dynamic_chunk_sizes), ()))]
        left = cfg.dynamic_left_context_frames[int(torch.randint(len(cfg.dynamic_left_context_frames), ()))]
        return chunk, left

    def forward(
        self,
        x: torch.Tensor,
        x_lens: torch.Tensor,
        chunk_size: int | None = None,
        left_context_frames: int | None = None,
        warmup: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole-utterance forward (with the chunked attention mask when chunk_size > 0).

        Args:
            x: (B, T, F) features, T >= 7.
            x_lens: (B,) int64 valid frames per utterance.
            chunk_size, left_context_frames: override the configured chunking (encoder frames; -1 = full
                context / all history); by default the config's values, or a random draw per batch when
                training with dynamic chunks.
            warmup: the fraction of the layer warm-up done (icefall's model warm-up). In training, each
                block's output is ``a * block(h) + (1 - a) * h`` with ``a = min(0.1 + 0.9 * warmup, 1)``:
                early on the blocks are mostly bypassed, so the encoder first learns as a shallow network
                (which finds the alignments far sooner) and the depth fades in. No effect in eval mode.
        Returns:
            encoder_out (B, T', D) and encoder_out_lens (B,) int64; frames past a length are padding.
        """
        if chunk_size is None or left_context_frames is None:
            default_chunk, default_left = self._chunking()
            chunk_size = default_chunk if chunk_size is None else chunk_size
            left_context_frames = default_left if left_context_frames is None else left_context_frames
        if chunk_size > 0 and not self.causal:
            raise ValueError(
                f"chunk_size={chunk_size} needs a causal encoder (this one has symmetric convolutions)"
            )
        h = self.input_dropout(self.subsampling(x))
        lens = self.output_lengths(x_lens).clamp(max=h.size(1))
        alpha = min(0.1 + 0.9 * warmup, 1.0) if self.training else 1.0
        for start, end, factor in self.stacks:
            if factor == 1:
                h = self._run_blocks(h, lens, start, end, alpha, chunk_size, left_context_frames)
            else:  # non-causal only (EncoderConfig), so there is no chunking to carry to the low rate
                bridge = self.bridges[str(start)]
                low, low_lens = bridge.down(h, lens)
                h = bridge.up(self._run_blocks(low, low_lens, start, end, alpha, -1, -1), h)
        return self.norm_out(h), lens

    def _run_blocks(
        self,
        h: torch.Tensor,
        lens: torch.Tensor,
        start: int,
        end: int,
        alpha: float,
        chunk_size: int,
        left_context_frames: int,
    ) -> torch.Tensor:
        """Blocks ``start .. end - 1`` on (B, T, D) frames with (B,) valid lengths -> (B, T, D)."""
        t = h.size(1)
        frames = torch.arange(t, device=h.device)
        pad_mask = frames[None, :] >= lens[:, None]  # (B, T)
        attn_mask = None
        chunk_mask = chunk_attention_mask(t, chunk_size, left_context_frames, h.device)
        if chunk_mask is not None or bool(pad_mask.any()):
            allowed = ~pad_mask[:, None, None, :]  # (B, 1, 1, T)
            if chunk_mask is not None:
                allowed = allowed & chunk_mask
            # A padding frame may see no valid key at all; letting every frame see itself avoids a
            # softmax over nothing (NaN) that would reach valid frames through masked values.
            attn_mask = allowed | torch.eye(t, dtype=torch.bool, device=h.device)
        for layer in self.layers[start:end]:
            out = layer(h, frames, attn_mask, pad_mask)[0]
            h = out if alpha == 1.0 else alpha * out + (1.0 - alpha) * h
        return h

    def get_init_states(self, batch_size: int, device: torch.device | str = "cpu") -> EncoderState:
        """Empty streaming state: no attention history, zero convolution history."""
        self._require_streaming()
        cfg = self.config
        head_dim = cfg.d_model // cfg.num_heads
        empty = torch.zeros(batch_size, cfg.num_heads, 0, head_dim, device=device)
        conv = torch.zeros(batch_size, cfg.d_model, cfg.conv_kernel - 1, device=device)
        n = cfg.num_layers
        return EncoderState(
            keys=[empty] * n,
            values=[empty] * n,
            conv=[conv] * n,
            processed_frames=torch.zeros(batch_size, dtype=torch.int64, device=device),
        )

    def streaming_forward(
        self, x_chunk: torch.Tensor, x_lens: torch.Tensor, states: EncoderState
    ) -> tuple[torch.Tensor, torch.Tensor, EncoderState]:
        """One chunk of streaming: the same frames :meth:`forward` gives with the chunked mask.

        Args:
            x_chunk: (B, chunk_size * 4 + streaming_pad_frames, F) features; the window starts
                chunk_size * 4 frames after the previous one. The last window of an utterance may hold
                fewer valid frames (pad it to the full size and give the real count in x_lens); it must be
                the utterance's last, because its padding frames enter the caches.
            x_lens: (B,) int64 valid frames in x_chunk.
            states: from :meth:`get_init_states` or the previous call.
        Returns:
            out (B, C, D) with C = ((T_chunk - 1) // 2 - 1) // 2, out_lens (B,) valid frames of out, and
            the new states.
        """
        self._require_streaming()
        h = self.subsampling(x_chunk)
        b, c, _ = h.shape
        lens = self.output_lengths(x_lens).clamp(max=c)
        new_frames = torch.arange(c, device=h.device)
        positions = states.processed_frames[:, None] + new_frames  # (B, C)
        pad_mask = new_frames[None, :] >= lens[:, None]
        cached = states.keys[0].size(2)
        # Cache slot p holds frame processed - cached + p; slots before frame 0 are empty.
        slot_valid = (
            torch.arange(cached, device=h.device)[None, :] >= (cached - states.processed_frames)[:, None]
        )
        key_valid = torch.cat((slot_valid, ~pad_mask), dim=1)  # (B, L + C)
        self_key = torch.zeros(c, cached + c, dtype=torch.bool, device=h.device)
        self_key[:, cached:] = torch.eye(c, dtype=torch.bool, device=h.device)
        attn_mask = key_valid[:, None, None, :] | self_key  # (B, 1, C, L + C)
        keep = self.left_context_frames
        keys, values, convs = [], [], []
        for i, layer in enumerate(self.layers):
            h, k, v, conv = layer(
                h, positions, attn_mask, pad_mask, (states.keys[i], states.values[i]), states.conv[i]
            )
            if keep >= 0:
                start = max(k.size(2) - keep, 0)
                k, v = k[:, :, start:], v[:, :, start:]
            keys.append(k)
            values.append(v)
            convs.append(conv)
        new_states = EncoderState(keys, values, convs, states.processed_frames + c)
        return self.norm_out(h), lens, new_states

    def _require_streaming(self) -> None:
        if not self.causal:
            raise RuntimeError(
                "streaming needs a causal encoder; this one was built with encoder.causal: false"
            )
