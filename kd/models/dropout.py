"""Dropout whose mask is cheap to draw on the CPU.

torch's CPU dropout draws its mask with ``bernoulli_``, which costs ~7 ns per element whatever the thread
count: 23-27% of a training step of the synthetic-corpus teacher (BENCHMARKS.md, "Dropout on the CPU").
Filling an int16 tensor with ``random_`` draws 15 uniform bits per element about three times as fast, and
those bits below ``round(p * 2**15)`` give the same Bernoulli mask with p rounded to a multiple of 2**-15
(the kept values are scaled by the exact inverse of the kept probability, so expectations are unchanged).
Off the CPU (CUDA's fused dropout is fast) this is ``F.dropout``; in eval mode it is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 2**15  # random_() fills an int16 tensor with integers in [0, 2**15)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zeroes each element of ``x`` (any shape) with probability ``p`` and scales the rest by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    threshold = min(round(p * _LEVELS), _LEVELS - 1)  # p just below 1 must keep something to scale
    drop = torch.empty(x.shape, dtype=torch.int16).random_() < threshold
    # masked_fill's backward keeps the bool mask only, as torch's dropout does
    return x.masked_fill(drop, 0.0).mul_(_LEVELS / (_LEVELS - threshold))


class Dropout(nn.Module):
    """``nn.Dropout`` with the CPU mask of :func:`dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability {p} must be in [0, 1)")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
