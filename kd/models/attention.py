"""Multi-head self-attention with rotary positions, chunked attention masks, and key/value caches.

Rotary position encoding (RoFormer) rotates queries and keys by angles proportional to their absolute frame
index; their dot product then depends only on the relative offset. Keys are cached already rotated, so a
streaming chunk only rotates its own frames, with the same angles the whole-utterance forward uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def chunk_attention_mask(
    num_frames: int, chunk_size: int, left_context_frames: int, device: torch.device | None = None
) -> torch.Tensor | None:
    """Which keys each query may attend to under chunked attention.

    Frame t in chunk c = t // chunk_size sees frames s with
    c * chunk_size - left_context_frames <= s < (c + 1) * chunk_size: its whole chunk and
    ``left_context_frames`` frames before the chunk, nothing after the chunk.

    Args:
        num_frames: T.
        chunk_size: frames per chunk; -1 = full context (no mask).
        left_context_frames: frames of history before the chunk; -1 = all.
    Returns:
        (T, T) bool, True where query t may attend to key s; None for full context.
    """
    if chunk_size <= 0:
        return None
    t = torch.arange(num_frames, device=device)
    chunk_start = (t // chunk_size) * chunk_size
    allowed = t[None, :] < (chunk_start + chunk_size)[:, None]
    if left_context_frames >= 0:
        allowed &= t[None, :] >= (chunk_start - left_context_frames)[:, None]
    return allowed


def rotate(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary position encoding.

    Args:
        x: (B, H, T, Dh), Dh even.
        positions: (T,) or (B, T) absolute frame indices.
    Returns:
        (B, H, T, Dh): pairs (x[..., i], x[..., i + Dh/2]) rotated by positions * base^(-2i/Dh).
    """
    half = x.size(-1) // 2
    # float64 angles: long utterances reach positions where float32 would lose ~1e-4 rad.
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float64) / half)
    angles = positions.to(torch.float64)[..., None] * inv_freq  # (T, half) or (B, T, half)
    if angles.dim() == 3:
        angles = angles.unsqueeze(1)  # (B, 1, T, half)
    cos = angles.cos().to(x.dtype)
    sin = angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention whose queries and keys carry rotary positions."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, rotary_base: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.rotary_base = rotary_base
        self.dropout = dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        attn_mask: torch.Tensor | None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attends from the T frames of ``x`` to the cached keys followed by those frames.

        Args:
            x: (B, T, D).
            positions: (T,) or (B, T) absolute frame index of each frame of x.
            attn_mask: (B, 1, T, L + T) bool, True = may attend; None = attend to everything.
            cache: keys and values of L earlier frames, each (B, H, L, Dh), keys already rotated.
        Returns:
            output (B, T, D), and all keys and values (B, H, L + T, Dh) for the next cache.
        """
        b, t, _ = x.shape
        q, k, v = self.in_proj(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = rotate(q, positions, self.rotary_base)
        k = rotate(k, positions, self.rotary_base)
        if cache is not None:
            k = torch.cat((cache[0], k), dim=2)
            v = torch.cat((cache[1], v), dim=2)
        dropout_p = self.dropout if self.training else 0.0
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # On the CPU the bfloat16 attention kernels are slower than float32 (3.6x in the backward pass).
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout_p
                )
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1)), k, v
