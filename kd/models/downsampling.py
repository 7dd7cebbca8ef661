"""Stacks of encoder blocks at a lower frame rate (Zipformer's middle stacks, Yao et al. 2023).

A block's cost is linear in its frames (quadratic in attention), so blocks in the middle of the encoder run
on 80 or 160 ms frames for a half or a quarter of it, while the first and last blocks, and so the encoder
output the joiner reads, stay at 40 ms. A stack leaves the stream that bypassed it in place and adds the
change it computed at the low rate: ``h + c * (up(stack(down(h))) - h)`` with a learnt per-channel ``c``.
"""

from __future__ import annotations

from itertools import groupby

import torch
from torch import nn


def block_stacks(factors: list[int], num_layers: int) -> list[tuple[int, int, int]]:
    """The runs of equal divisors in ``factors``, as (first block, end block, divisor); all at 1 if empty."""
    if not factors:
        return [(0, num_layers, 1)]
    stacks, start = [], 0
    for factor, run in groupby(factors):
        end = start + len(list(run))
        stacks.append((start, end, factor))
        start = end
    return stacks


class FrameRateBridge(nn.Module):
    """Takes the residual stream down by ``factor`` for a stack of blocks and brings the result back up.

    Down: low-rate frame k is a learnt weighted mean of the valid frames among ``k * factor .. k * factor +
    factor - 1`` (padding frames get no weight, so a valid frame never reads padding and the output of an
    utterance does not depend on the batch it is in). Up: each low-rate frame repeated ``factor`` times,
    mixed into the bypassing stream with a learnt per-channel scale (initially 0.5).
    """

    def __init__(self, d_model: int, factor: int) -> None:
        super().__init__()
        if factor < 2:
            raise ValueError(f"a frame-rate bridge needs factor >= 2, got {factor}")
        self.factor = factor
        self.frame_weights = nn.Parameter(torch.zeros(factor))
        self.bypass_scale = nn.Parameter(torch.full((d_model,), 0.5))

    def down(self, h: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) stream, (B,) valid frames -> (B, ceil(T / factor), D) and (B,) valid low-rate frames."""
        b, t, d = h.shape
        r = self.factor
        t_low = (t + r - 1) // r
        pad = t_low * r - t
        valid = torch.arange(t_low * r, device=h.device)[None, :] < lens[:, None]  # (B, T_low * r)
        h = torch.cat((h, h.new_zeros(b, pad, d)), dim=1)
        weights = self.frame_weights.softmax(0) * valid.view(b, t_low, r)  # (B, T_low, r)
        # Low-rate frames made of padding only have no weight at all; they stay padding (zero).
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=torch.finfo(h.dtype).tiny)
        low = torch.einsum("btrd,btr->btd", h.view(b, t_low, r, d), weights)
        return low, (lens + r - 1) // r

    def up(self, low: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """(B, T_low, D) stack output and the (B, T, D) stream that bypassed it -> (B, T, D)."""
        up = low.repeat_interleave(self.factor, dim=1)[:, : h.size(1)]
        return h + self.bypass_scale * (up - h)
