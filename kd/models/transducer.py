"""The transducer: encoder + decoder + joiner, trained with icefall's pruned RNN-T loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kd import losses


@dataclass
class TransducerOutput:
    """What one forward gives the training loop and the KD losses.

    Attributes:
        simple_loss: the smoothed simple-joiner loss over the full lattice; scalar, or (B,) for
            reduction="none".
        pruned_loss: the real joiner's loss inside the prune ranges; same shape as simple_loss.
        encoder_out: (B, T, D_enc).
        encoder_out_lens: (B,) int64.
        decoder_out: (B, U+1, D_dec).
        ranges: (B, T, S) int64, the u values of the pruned lattice at each frame.
        logits: (B, T, S, V) joiner logits on the pruned lattice nodes (t, ranges[b, t, s]).
        boundary: (B, 4) int64 rows [0, 0, U_b, T_b] (k2's convention).
        symbols: (B, U) int64 labels, padded with blank.
    """

    simple_loss: torch.Tensor
    pruned_loss: torch.Tensor
    encoder_out: torch.Tensor
    encoder_out_lens: torch.Tensor
    decoder_out: torch.Tensor
    ranges: torch.Tensor
    logits: torch.Tensor
    boundary: torch.Tensor
    symbols: torch.Tensor


class Transducer(nn.Module):
    """RNN-T: ``encoder`` (B, T, F) -> (B, T', D_enc); ``decoder`` labels -> (B, U+1, D_dec); ``joiner``.

    ``simple_am_proj`` / ``simple_lm_proj`` are the "simple" joiner of the pruned loss (am + lm, no tanh),
    whose full-lattice loss gives the prune ranges. ``ctc_output`` (with ``ctc_head``) is an auxiliary CTC
    layer on the encoder, used only in training (:meth:`ctc_loss`).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        joiner: nn.Module,
        vocab_size: int,
        blank_id: int = 0,
        ctc_head: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        # The joiner is registered before the decoder: a tensor they share (tied decoder) is then counted
        # as the joiner's by count_parameters.
        self.encoder = encoder
        self.joiner = joiner
        self.decoder = decoder
        self.simple_am_proj = nn.Linear(encoder.output_dim, vocab_size)
        self.simple_lm_proj = nn.Linear(decoder.output_dim, vocab_size)
        self.ctc_output = nn.Linear(encoder.output_dim, vocab_size) if ctc_head else None

    def labels_to_symbols(
        self, y: list[list[int]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-id lists -> symbols (B, U) padded with blank, and y_lens (B,) int64.

        Raises:
            ValueError: a label is the blank or outside the vocabulary (tokenizer and model do not match).
        """
        y_lens = torch.tensor([len(seq) for seq in y], dtype=torch.int64)
        symbols = torch.full((len(y), max(map(len, y), default=0)), self.blank_id, dtype=torch.int64)
        for i, seq in enumerate(y):
            symbols[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.int64)
        valid = torch.arange(symbols.size(1))[None, :] < y_lens[:, None]
        labels = symbols[valid]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.vocab_size):
            raise ValueError(
                f"label ids span [{int(labels.min())}, {int(labels.max())}] but the model's vocabulary is "
                f"[0, {self.vocab_size}): the tokenizer does not match the model (check bpe_model and the "
                "checkpoint)"
            )
        if bool((labels == self.blank_id).any()):
            raise ValueError(f"a transcript contains the blank id {self.blank_id}; labels must be non-blank")
        return symbols.to(device), y_lens.to(device)

    def pruned_logits(
        self, encoder_out: torch.Tensor, decoder_out: torch.Tensor, ranges: torch.Tensor
    ) -> torch.Tensor:
        """The joiner on the pruned lattice.

        (B, T, D_enc), (B, U+1, D_dec), ranges (B, T, S) -> logits (B, T, S, V).
        """
        am, lm = losses.do_rnnt_pruning(
            am=self.joiner.encoder_proj(encoder_out), lm=self.joiner.decoder_proj(decoder_out), ranges=ranges
        )
        return self.joiner(am, lm, project_input=False)

    def full_logits(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        """The joiner on every lattice node: (B, T, D_enc), (B, U+1, D_dec) -> (B, T, U+1, V)."""
        am = self.joiner.encoder_proj(encoder_out).unsqueeze(2)
        lm = self.joiner.decoder_proj(decoder_out).unsqueeze(1)
        return self.joiner(am, lm, project_input=False)

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
    ) -> TransducerOutput:
        """icefall's pruned RNN-T forward.

        Args:
            x: (B, T, F) features. x_lens: (B,) int64 valid frames.
            y: B lists of token ids (no blanks).
            prune_range: s_range, the u values kept per frame.
            am_scale, lm_scale: smoothing of the simple loss towards the encoder-only / decoder-only terms.
            rnnt_type: "regular" | "modified" | "constrained" (k2's lattice topologies).
            reduction: "sum" | "mean" | "none".
            warmup: the encoder's layer warm-up (see :meth:`ConformerEncoder.forward`); 1.0 = done.
        """
        if len(y) != x.size(0):
            raise ValueError(f"{len(y)} transcripts for a batch of {x.size(0)} utterances")
        encoder_out, encoder_out_lens = self.encoder(x, x_lens, warmup=warmup)
        symbols, y_lens = self.labels_to_symbols(y, x.device)
        decoder_out = self.decoder_forward(symbols, y_lens)
        return self.transducer_loss(
            encoder_out,
            encoder_out_lens,
            decoder_out,
            symbols,
            y_lens,
            prune_range=prune_range,
            am_scale=am_scale,
            lm_scale=lm_scale,
            rnnt_type=rnnt_type,
            reduction=reduction,
        )

    def ctc_loss(
        self,
        encoder_out: torch.Tensor,
        encoder_out_lens: torch.Tensor,
        symbols: torch.Tensor,
        y_lens: torch.Tensor,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """The auxiliary CTC loss of the encoder output (blank = the transducer's blank).

        Args:
            encoder_out: (B, T, D_enc). encoder_out_lens: (B,) int64.
            symbols: (B, U) int64 labels padded with blank. y_lens: (B,) int64.
            reduction: "sum" | "none" ((B,) per utterance).
        Returns:
            the negative log-likelihood, summed or per utterance. An utterance with too few frames for its
            labels under CTC (repeated labels need a blank between them) gets 0: this term is auxiliary,
            the transducer loss still trains on it.
        """
        if self.ctc_output is None:
            raise RuntimeError("this model has no CTC head: build it with model.ctc_head: true")
        logits = self.ctc_output(encoder_out)
        with torch.autocast(device_type=encoder_out.device.type, enabled=False):
            log_probs = logits.float().log_softmax(dim=-1)
            return F.ctc_loss(
                log_probs.transpose(0, 1),
                symbols,
                encoder_out_lens,
                y_lens,
                blank=self.blank_id,
                reduction=reduction,
                zero_infinity=True,
            )

    def decoder_forward(self, symbols: torch.Tensor, y_lens: torch.Tensor) -> torch.Tensor:
        """The decoder on [blank] + labels: symbols (B, U), y_lens (B,) -> decoder_out (B, U+1, D_dec)."""
        return self.decoder(F.pad(symbols, (1, 0), value=self.blank_id), y_lens + 1)

    def transducer_loss(
        self,
        encoder_out: torch.Tensor,
        encoder_out_lens: torch.Tensor,
        decoder_out: torch.Tensor,
        symbols: torch.Tensor,
        y_lens: torch.Tensor,
        prune_range: int = 5,
        am_scale: float = 0.0,
        lm_scale: float = 0.25,
        rnnt_type: str = "regular",
        reduction: str = "sum",
    ) -> TransducerOutput:
        """The simple and pruned losses of one encoder output against the labels, with this model's
        simple projections and joiner (a cascaded model calls it once per pass).

        Args:
            encoder_out: (B, T, D_enc). encoder_out_lens: (B,) int64 valid frames.
            decoder_out: (B, U+1, D_dec) from :meth:`decoder_forward`.
            symbols: (B, U) int64 labels padded with blank. y_lens: (B,) int64 label counts.
            prune_range, am_scale, lm_scale, rnnt_type, reduction: as :meth:`forward`.
        """
        device = encoder_out.device
        if bool((encoder_out_lens < 1).any()):
            raise ValueError(
                "an utterance has fewer than 7 feature frames (no encoder output); drop such utterances "
                "in data preparation"
            )
        boundary = torch.zeros(encoder_out.size(0), 4, dtype=torch.int64, device=device)
        boundary[:, 2] = y_lens
        boundary[:, 3] = encoder_out_lens
        lm = self.simple_lm_proj(decoder_out)
        am = self.simple_am_proj(encoder_out)
        # The lattice recursions run in float32 even under autocast: their log-sum-exps lose too much in bf16.
        with torch.autocast(device_type=device.type, enabled=False):
            simple_loss, (px_grad, py_grad) = losses.rnnt_loss_smoothed(
                lm=lm.float(),
                am=am.float(),
                symbols=symbols,
                termination_symbol=self.blank_id,
                lm_only_scale=lm_scale,
                am_only_scale=am_scale,
                boundary=boundary,
                rnnt_type=rnnt_type,
                reduction=reduction,
                return_grad=True,
            )
        ranges = losses.get_rnnt_prune_ranges(
            px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=prune_range
        )
        logits = self.pruned_logits(encoder_out, decoder_out, ranges)
        with torch.autocast(device_type=device.type, enabled=False):
            pruned_loss = losses.rnnt_loss_pruned(
                logits=logits.float(),
                symbols=symbols,
                ranges=ranges,
                termination_symbol=self.blank_id,
                boundary=boundary,
                rnnt_type=rnnt_type,
                reduction=reduction,
            )
        return TransducerOutput(
            simple_loss=simple_loss,
            pruned_loss=pruned_loss,
            encoder_out=encoder_out,
            encoder_out_lens=encoder_out_lens,
            decoder_out=decoder_out,
            ranges=ranges,
            logits=logits,
            boundary=boundary,
            symbols=symbols,
        )
