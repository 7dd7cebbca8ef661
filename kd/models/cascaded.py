"""Cascaded two-pass transducer (METHODS.md (e)): a causal Conformer encoder streams the first pass, a
shallow non-causal Conformer stack on its output gives the second, and both share one decoder and joiner.

Training: :meth:`CascadedTransducer.forward` computes each pass's pruned RNN-T losses with the one-pass code
(:meth:`Transducer.transducer_loss`) and returns both, plus their weighted sums
``first_pass_weight * loss_1 + second_pass_weight * loss_2`` as ``simple_loss`` / ``pruned_loss``, so
:class:`kd.train.objective.TransducerObjective` trains it unchanged.

Decoding (:mod:`kd.decode` works on both passes):

- ``model.encoder(x, x_lens)`` is the second pass, the final output: ``decode_dataset(model, ...)`` with
  greedy_search or modified_beam_search decodes it (look-ahead mode).
- ``model.first_pass`` is the first pass as a transducer of its own: the causal encoder with the same
  decoder and joiner modules (not copies).
  ``decode_dataset(model.first_pass, ..., "streaming_greedy_search")`` streams it chunk by chunk through
  ``encoder.streaming_forward``; greedy_search / modified_beam_search on it decode the chunked
  whole-utterance forward, which gives the same frames.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from kd.models.config import EncoderConfig, SecondPassConfig
from kd.models.conformer import ConformerBlock, ConformerEncoder
from kd.models.transducer import Transducer, TransducerOutput


class SecondPassEncoder(nn.Module):
    """Non-causal Conformer blocks on the first pass's frames: (B, T, D_1) -> (B, T, D_1), full context.

    When the blocks' ``d_model`` differs from D_1, ``in_proj`` / ``out_proj`` map into and back out of it.
    """

    def __init__(self, input_dim: int, config: EncoderConfig) -> None:
        super().__init__()
        if config.causal:
            raise ValueError("the second pass is non-causal; build it from a config with causal: false")
        resize = config.d_model != input_dim
        self.in_proj = nn.Linear(input_dim, config.d_model) if resize else None
        self.layers = nn.ModuleList(ConformerBlock(config) for _ in range(config.num_layers))
        self.norm_out = nn.LayerNorm(config.d_model)  # as ConformerEncoder: one norm after the last block
        self.out_proj = nn.Linear(config.d_model, input_dim) if resize else None

    def forward(self, h: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """
        Args:
            h: (B, T, D_1) first-pass output; frames past a length are padding.
            lens: (B,) int64 valid frames.
        Returns:
            (B, T, D_1); frames past a length are padding.
        """
        t = h.size(1)
        frames = torch.arange(t, device=h.device)
        pad_mask = frames[None, :] >= lens[:, None]  # (B, T)
        attn_mask = None
        if bool(pad_mask.any()):
            # As in ConformerEncoder: a padding frame sees itself, so no softmax runs over nothing (NaN).
            attn_mask = (~pad_mask)[:, None, None, :] | torch.eye(t, dtype=torch.bool, device=h.device)
        if self.in_proj is not None:
            h = self.in_proj(h)
        for layer in self.layers:
            h = layer(h, frames, attn_mask, pad_mask)[0]
        h = self.norm_out(h)
        return h if self.out_proj is None else self.out_proj(h)


def second_pass_block_config(encoder: EncoderConfig, second_pass: SecondPassConfig) -> EncoderConfig:
    """The :class:`EncoderConfig` of the second pass's blocks: its own sizes, the encoder's rotary base."""
    return dataclasses.replace(
        encoder,
        num_layers=second_pass.num_layers,
        d_model=second_pass.d_model,
        num_heads=second_pass.num_heads,
        ffn_dim=second_pass.ffn_dim,
        conv_kernel=second_pass.conv_kernel,
        dropout=second_pass.dropout,
        causal=False,
        chunk_size=-1,
        left_context_frames=-1,
        dynamic_chunk_training=False,
    )


class CascadedEncoder(nn.Module):
    """``first_pass`` (a causal :class:`ConformerEncoder`) and ``second_pass`` (:class:`SecondPassEncoder`).

    As a model's ``encoder`` it is the second pass, with a non-causal encoder's interface: forward
    (B, T, F) -> (B, T', D), output_dim, subsampling_factor, output_lengths, causal (False), chunk_size (-1).
    """

    causal = False
    chunk_size = -1
    left_context_frames = -1
    subsampling_factor = ConformerEncoder.subsampling_factor

    def __init__(self, config: EncoderConfig, second_pass: SecondPassConfig) -> None:
        super().__init__()
        if not config.causal:
            raise ValueError("the first pass of a cascaded encoder must be causal (encoder.causal: true)")
        self.first_pass = ConformerEncoder(config)
        self.second_pass = SecondPassEncoder(config.d_model, second_pass_block_config(config, second_pass))
        self.output_dim = config.d_model

    @staticmethod
    def output_lengths(x_lens: torch.Tensor) -> torch.Tensor:
        """(B,) feature-frame counts -> (B,) encoder-frame counts (both passes have the same frames)."""
        return ConformerEncoder.output_lengths(x_lens)

    def forward(
        self,
        x: torch.Tensor,
        x_lens: torch.Tensor,
        chunk_size: int | None = None,
        left_context_frames: int | None = None,
        warmup: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The second (final) pass: (B, T, F), (B,) -> (B, T', D), (B,); chunking and warm-up apply to the
        first."""
        _, second, lens = self.forward_both(x, x_lens, chunk_size, left_context_frames, warmup)
        return second, lens

    def forward_both(
        self,
        x: torch.Tensor,
        x_lens: torch.Tensor,
        chunk_size: int | None = None,
        left_context_frames: int | None = None,
        warmup: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both passes.

        Args:
            x: (B, T, F) features, T >= 7. x_lens: (B,) int64 valid frames.
            chunk_size, left_context_frames, warmup: as :meth:`ConformerEncoder.forward`, for the first
                pass.
        Returns:
            first-pass output (B, T', D), second-pass output (B, T', D), and their lengths (B,) int64.
        """
        first, lens = self.first_pass(x, x_lens, chunk_size, left_context_frames, warmup)
        return first, self.second_pass(first, lens), lens


@dataclass
class CascadedOutput:
    """Both passes of one :class:`CascadedTransducer` forward.

    Attributes:
        first_pass: the causal pass's :class:`TransducerOutput`.
        second_pass: the non-causal pass's :class:`TransducerOutput` (same decoder_out, symbols, boundary).
        simple_loss: first_pass_weight * first.simple_loss + second_pass_weight * second.simple_loss.
        pruned_loss: the same weighted sum of the pruned losses.
    """

    first_pass: TransducerOutput
    second_pass: TransducerOutput
    simple_loss: torch.Tensor
    pruned_loss: torch.Tensor

    @property
    def encoder_out_lens(self) -> torch.Tensor:
        """(B,) int64 encoder frames, the same for both passes (the per-frame normaliser)."""
        return self.second_pass.encoder_out_lens


class FirstPass(nn.Module):
    """The first pass of a :class:`CascadedTransducer` as a transducer for :mod:`kd.decode`.

    ``encoder`` (causal, with ``streaming_forward``), ``decoder`` and ``joiner`` are the cascaded model's own
    modules, so it always decodes the current weights. It has no loss: train the cascaded model.
    """

    def __init__(
        self, encoder: ConformerEncoder, decoder: nn.Module, joiner: nn.Module, vocab_size: int, blank_id: int
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.encoder = encoder
        self.joiner = joiner
        self.decoder = decoder


class CascadedTransducer(Transducer):
    """A :class:`Transducer` whose ``encoder`` is a :class:`CascadedEncoder`; ``forward`` trains both passes.

    The decoder, joiner and simple projections are shared by the two passes, as in the one-pass model.
    """

    def __init__(
        self,
        encoder: CascadedEncoder,
        decoder: nn.Module,
        joiner: nn.Module,
        vocab_size: int,
        blank_id: int = 0,
        first_pass_weight: float = 0.5,
        second_pass_weight: float = 0.5,
        ctc_head: bool = False,
    ) -> None:
        super().__init__(encoder, decoder, joiner, vocab_size, blank_id, ctc_head=ctc_head)
        self.first_pass_weight = first_pass_weight
        self.second_pass_weight = second_pass_weight

    @property
    def first_pass(self) -> FirstPass:
        """The streaming first pass, for decoding (see the module docstring)."""
        return FirstPass(self.encoder.first_pass, self.decoder, self.joiner, self.vocab_size, self.blank_id)

    def forward(
        self,
        x: torch.Tensor,
        x_lens: torch.Tensor,
        y: list[list[int]],
        prune_range: int = 5,
        am_scale: float = 0.0,
        lm_scale: float = 0.25,
        rnnt_type: str = "regular",
        reduction: str = "sum",
        warmup: float = 1.0,
    ) -> CascadedOutput:
        """Both passes' pruned RNN-T losses; the arguments are those of :meth:`Transducer.forward`."""
        if len(y) != x.size(0):
            raise ValueError(f"{len(y)} transcripts for a batch of {x.size(0)} utterances")
        first, second, lens = self.encoder.forward_both(x, x_lens, warmup=warmup)
        symbols, y_lens = self.labels_to_symbols(y, x.device)
        decoder_out = self.decoder_forward(symbols, y_lens)
        outputs = [
            self.transducer_loss(
                encoder_out,
                lens,
                decoder_out,
                symbols,
                y_lens,
                prune_range=prune_range,
                am_scale=am_scale,
                lm_scale=lm_scale,
                rnnt_type=rnnt_type,
                reduction=reduction,
            )
            for encoder_out in (first, second)
        ]
        w1, w2 = self.first_pass_weight, self.second_pass_weight
        return CascadedOutput(
            first_pass=outputs[0],
            second_pass=outputs[1],
            simple_loss=w1 * outputs[0].simple_loss + w2 * outputs[1].simple_loss,
            pruned_loss=w1 * outputs[0].pruned_loss + w2 * outputs[1].pruned_loss,
        )
