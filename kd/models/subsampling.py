"""Convolutional subsampling by 4 (two stride-2 3x3 Conv2d layers over time and frequency, as in icefall)."""

from __future__ import annotations

import torch
from torch import nn

# Output frame t' reads input frames 4t' .. 4t'+6: a window of 7 frames with a hop of 4.
SUBSAMPLING_FACTOR = 4
RECEPTIVE_FIELD = 7


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frames after subsampling for ``lengths`` input frames: ((T - 1) // 2 - 1) // 2 (0 when T < 7).

    Args:
        lengths: (B,) int64 feature-frame counts.
    Returns:
        (B,) int64 encoder-frame counts.
    """
    return (((lengths - 1) // 2 - 1) // 2).clamp(min=0)


class Conv2dSubsampling(nn.Module):
    """(B, T, F) features -> (B, ((T - 1) // 2 - 1) // 2, d_model).

    No padding in time, so every output frame depends on exactly 7 input frames: a chunk of
    4 * C + 3 input frames gives C output frames, the same ones the whole utterance gives.
    """

    def __init__(self, num_features: int, channels: int, d_model: int, norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        freq_out = ((num_features - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq_out, d_model)
        # icefall normalises here too: the encoder's blocks add to this output, and with raw log-mel
        # input nothing else bounds its scale.
        self.norm = nn.LayerNorm(d_model) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, F) with T >= 7. Returns (B, T', d_model)."""
        if x.size(1) < RECEPTIVE_FIELD:
            raise ValueError(
                f"features have {x.size(1)} frames; the x4 subsampling needs at least {RECEPTIVE_FIELD} "
                "(pad the input, or drop utterances shorter than 70 ms in data preparation)"
            )
        h = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = h.shape
        h = self.out(h.transpose(1, 2).reshape(b, t, c * f))
        return h if self.norm is None else self.norm(h)
