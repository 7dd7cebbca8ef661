"""What a search returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DecodingResults:
    """Best hypothesis per utterance, in input order.

    Attributes:
        hyps: token ids (no blanks) per utterance.
        timestamps: per utterance, the encoder frame (after subsampling) at which each token of ``hyps`` was
            emitted; ``None`` unless asked for.
        scores: per utterance, the search's log-probability of the hypothesis; ``None`` unless asked for.
    """

    hyps: list[list[int]]
    timestamps: list[list[int]] | None = None
    scores: list[float] | None = None


def package(
    hyps: list[list[int]],
    timestamps: list[list[int]],
    scores: list[float],
    return_timestamps: bool,
    return_scores: bool,
) -> list[list[int]] | DecodingResults:
    """Plain hypotheses, or :class:`DecodingResults` holding what was asked for."""
    if not (return_timestamps or return_scores):
        return hyps
    return DecodingResults(
        hyps=hyps,
        timestamps=timestamps if return_timestamps else None,
        scores=scores if return_scores else None,
    )


def check_encoder_out(encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor) -> None:
    """Raises a ValueError naming the problem when encoder outputs and lengths do not fit together."""
    if encoder_out.dim() != 3:
        raise ValueError(f"encoder_out must be (B, T, D), got shape {tuple(encoder_out.shape)}")
    if encoder_out_lens.shape != (encoder_out.size(0),):
        raise ValueError(
            f"encoder_out_lens must be (B,) = ({encoder_out.size(0)},), got {tuple(encoder_out_lens.shape)}"
        )
    if encoder_out_lens.numel() and int(encoder_out_lens.max()) > encoder_out.size(1):
        raise ValueError(
            f"encoder_out_lens max {int(encoder_out_lens.max())} exceeds encoder_out frames "
            f"{encoder_out.size(1)}"
        )
