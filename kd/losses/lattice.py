"""Lattice helpers shared by the KD losses: per-node log-probs, node masks, prune-range gathering.

Node layout (used here and by the joiner): node (t, u) of utterance b, t < T frames, u <= U symbols
emitted, so full-lattice tensors are (B, T, U+1) and pruned ones (B, T, S) with S = s_range, where
pruned position k of frame t is node (t, ranges[b, t, k]). k2's px/py layout ((B, U, T+1) and
(B, U+1, T), see kd.losses.rnnt) is what the recursions consume; px_py_to_nodes converts from it.

At node (t, u): blank_logp = log P(blank | t, u) (-> (t+1, u)) and symbol_logp = log P(y_{u+1} | t, u)
(-> (t, u+1)); symbol_logp is -inf on the last row u = U_b, where no symbol is left to emit.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

NEG_INF = float("-inf")


def log_softmax_at(logits: Tensor, index: Tensor, scale: float = 1.0) -> Tensor:
    """log_softmax(scale * logits, dim=-1) at a few classes per row, without building the log-softmax.

    Args:
        logits: (..., V). index: int64 (..., K), classes in [0, V). scale: 1 / temperature.

    Returns:
        (..., K). Same numbers as gathering from log_softmax, but the backward pass writes the gradient
        into a single (..., V) buffer (autograd through logsumexp/gather would hold about three).
    """
    return _LogSoftmaxAt.apply(logits, index, scale)


class _LogSoftmaxAt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, index, scale):
        scaled = logits * scale if scale != 1.0 else logits
        normalizers = torch.logsumexp(scaled, dim=-1, keepdim=True)
        out = torch.gather(scaled, -1, index) - normalizers
        ctx.save_for_backward(logits, normalizers, index)
        ctx.scale = scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        logits, normalizers, index = ctx.saved_tensors
        scale = ctx.scale
        # d out[k] / d z[v] = [v == index[k]] - softmax(z)[v], with z = scale * logits
        # one logits-sized buffer: the scaling (if any) and everything after it happen in place
        grad = logits.mul(scale).sub_(normalizers) if scale != 1.0 else logits.sub(normalizers)
        grad.exp_().mul_(-grad_out.sum(dim=-1, keepdim=True))
        grad.scatter_add_(-1, index, grad_out)
        return grad.mul_(scale) if scale != 1.0 else grad, None, None


def boundary_from_lengths(symbol_lens: Tensor, frame_lens: Tensor) -> Tensor:
    """k2's boundary for RNN-T: int64 (B, 4) rows [0, 0, U_b, T_b]."""
    if symbol_lens.shape != frame_lens.shape or symbol_lens.ndim != 1:
        raise ValueError(
            f"symbol_lens and frame_lens must both be (B,), got {symbol_lens.shape}, {frame_lens.shape}"
        )
    zeros = torch.zeros_like(symbol_lens, dtype=torch.int64)
    return torch.stack([zeros, zeros, symbol_lens.long(), frame_lens.long().to(symbol_lens.device)], dim=1)


def full_node_mask(frame_lens: Tensor, symbol_lens: Tensor, T: int, U: int) -> Tensor:
    """bool (B, T, U+1): the nodes of each utterance's lattice, t < T_b and u <= U_b."""
    _check_lengths(frame_lens, symbol_lens, T, U)
    t = torch.arange(T, device=frame_lens.device).view(1, T, 1)
    u = torch.arange(U + 1, device=frame_lens.device).view(1, 1, U + 1)
    return (t < frame_lens.view(-1, 1, 1)) & (u <= symbol_lens.view(-1, 1, 1).to(frame_lens.device))


def pruned_node_mask(ranges: Tensor, frame_lens: Tensor, symbol_lens: Tensor) -> Tensor:
    """bool (B, T, S): the kept nodes (t, ranges[b, t, k]) that lie in the utterance, t < T_b, u <= U_b.

    ranges: int64 (B, T, S) from get_rnnt_prune_ranges (on padding frames it points at real rows, so the
    frame test matters).
    """
    B, T, _ = ranges.shape
    if frame_lens.shape != (B,) or symbol_lens.shape != (B,):
        raise ValueError(
            f"frame_lens and symbol_lens must be ({B},), got {frame_lens.shape}, {symbol_lens.shape}"
        )
    if bool((frame_lens > T).any()):
        raise ValueError(f"frame_lens {frame_lens.tolist()} exceed the T={T} frames of ranges")
    t = torch.arange(T, device=ranges.device).view(1, T, 1)
    return (t < frame_lens.to(ranges.device).view(B, 1, 1)) & (
        ranges <= symbol_lens.to(ranges.device).view(B, 1, 1)
    )


def gather_pruned(values: Tensor, ranges: Tensor) -> Tensor:
    """Full-lattice values at the kept nodes: (B, T, U+1, *rest) -> (B, T, S, *rest),
    out[b, t, k] = values[b, t, ranges[b, t, k]]. Differentiable w.r.t. values."""
    B, T, S = ranges.shape
    if values.shape[:2] != (B, T):
        raise ValueError(f"values {tuple(values.shape)} and ranges {tuple(ranges.shape)} differ in (B, T)")
    if bool((ranges >= values.shape[2]).any()) or bool((ranges < 0).any()):
        raise ValueError(f"ranges must lie in [0, {values.shape[2] - 1}] (the rows of values)")
    rest = values.shape[3:]
    index = ranges.view(B, T, S, *([1] * len(rest))).expand(B, T, S, *rest)
    return torch.gather(values, 2, index)


def scatter_pruned(values: Tensor, ranges: Tensor, num_rows: int, fill: float = NEG_INF) -> Tensor:
    """The inverse of gather_pruned: (B, T, S, *rest) -> (B, T, num_rows, *rest), `fill` off the kept nodes.
    num_rows is U+1. Differentiable w.r.t. values."""
    B, T, S = ranges.shape
    if values.shape[:3] != (B, T, S):
        raise ValueError(f"values {tuple(values.shape)} does not match ranges {tuple(ranges.shape)}")
    if bool((ranges >= num_rows).any()) or bool((ranges < 0).any()):
        raise ValueError(f"ranges must lie in [0, {num_rows - 1}]")
    rest = values.shape[3:]
    index = ranges.view(B, T, S, *([1] * len(rest))).expand(B, T, S, *rest)
    out = values.new_full((B, T, num_rows, *rest), fill)
    return out.scatter(2, index, values)


def node_logprobs(
    logits: Tensor,
    symbols: Tensor,
    blank_id: int = 0,
    ranges: Tensor | None = None,
    symbol_lens: Tensor | None = None,
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """log P(blank) and log P(next symbol) at every node of a joiner output, from softmax(logits / tau).

    Args:
        logits: (B, T, U+1, V) over the full lattice, or (B, T, S, V) over the pruned one (give ranges).
        symbols: int64 (B, U) transcripts, padded with anything in [0, V).
        ranges: int64 (B, T, S) for pruned logits; None for full ones.
        symbol_lens: (B,) U_b; symbol_logp is -inf for u >= U_b (for u = U when None).
        temperature: the distillation temperature tau.

    Returns:
        blank_logp, symbol_logp: each (B, T, U+1) or (B, T, S).
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, U+1 or S, V), got {tuple(logits.shape)}")
    B, T, N, V = logits.shape
    if symbols.dtype != torch.int64 or symbols.ndim != 2 or symbols.shape[0] != B:
        raise ValueError(f"symbols must be int64 (B={B}, U), got {symbols.dtype} {tuple(symbols.shape)}")
    U = symbols.shape[1]
    if symbols.numel() and bool(((symbols < 0) | (symbols >= V)).any()):
        raise ValueError(f"symbols contain labels outside the vocabulary [0, {V})")
    if not 0 <= blank_id < V:
        raise ValueError(f"blank_id={blank_id} is outside the vocabulary [0, {V})")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if ranges is None:
        if N != U + 1:
            raise ValueError(
                f"full-lattice logits need U+1={U + 1} rows, got {N} (pass ranges for pruned logits)"
            )
        rows = torch.arange(N, device=logits.device).view(1, 1, N).expand(B, T, N)
    else:
        if ranges.shape != (B, T, N):
            raise ValueError(f"ranges {tuple(ranges.shape)} does not match logits {tuple(logits.shape)}")
        rows = ranges
    # the symbol after row u is symbols[u]; on row U (and beyond U_b) there is none
    padded = torch.cat([symbols, symbols.new_full((B, 1), blank_id)], dim=1)
    next_symbol = torch.gather(padded.unsqueeze(1).expand(B, T, U + 1), 2, rows.clamp(max=U))
    index = torch.stack([next_symbol, torch.full_like(next_symbol, blank_id)], dim=3)  # (B, T, N, 2)
    symbol_logp, blank_logp = log_softmax_at(logits, index, 1.0 / temperature).unbind(3)
    last = symbol_lens.to(logits.device).view(B, 1, 1) if symbol_lens is not None else U
    symbol_logp = symbol_logp.masked_fill(rows >= last, NEG_INF)
    return blank_logp, symbol_logp


def px_py_to_nodes(px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """k2's px (B, U, T+1) or (B, U, T) and py (B, U+1, T) -> blank_logp, symbol_logp, each (B, T, U+1).

    symbol_logp is -inf on row U; the regular topology's extra frame (px[:, :, T]) is dropped.
    """
    B, U, T1 = px.shape
    T = py.shape[2]
    if py.shape != (B, U + 1, T) or T1 not in (T, T + 1):
        raise ValueError(f"px {tuple(px.shape)} and py {tuple(py.shape)} do not form a lattice")
    symbol_logp = torch.cat([px[:, :, :T], px.new_full((B, 1, T), NEG_INF)], dim=1)
    return py.transpose(1, 2), symbol_logp.transpose(1, 2)


def _check_lengths(frame_lens: Tensor, symbol_lens: Tensor, T: int, U: int) -> None:
    if frame_lens.ndim != 1 or symbol_lens.shape != frame_lens.shape:
        raise ValueError(
            f"frame_lens and symbol_lens must both be (B,), got {frame_lens.shape}, {symbol_lens.shape}"
        )
    if bool((frame_lens > T).any()) or bool((symbol_lens > U).any()):
        raise ValueError(
            f"lengths exceed the padded lattice (T={T}, U={U}): frame_lens {frame_lens.tolist()}, "
            f"symbol_lens {symbol_lens.tolist()}"
        )


def reduce_nodes(values: Tensor, valid: Tensor, reduction: str) -> Tensor:
    """The KD losses' reduction: per-node values (any shape) zeroed off `valid` (bool, same shape), then
    "sum" -> their sum over the valid nodes (a scalar; the caller normalises, e.g. by frames), or
    "none" -> the zeroed per-node values."""
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction should be 'sum' or 'none', got {reduction!r}")
    if valid.shape != values.shape:
        raise ValueError(f"node mask {tuple(valid.shape)} does not match the values {tuple(values.shape)}")
    values = values.masked_fill(~valid, 0.0)
    return values.sum() if reduction == "sum" else values


def lengths_from_boundary(boundary: Tensor, B: int, T: int, U: int) -> tuple[Tensor, Tensor]:
    """symbol_lens U_b and frame_lens T_b, each int64 (B,), from k2's boundary (B, 4) rows [0, 0, U_b, T_b]
    (every utterance starts at node (0, 0)), checked against the padded lattice's B, T frames, U symbols."""
    if boundary.shape != (B, 4) or boundary.dtype != torch.int64:
        raise ValueError(
            f"boundary must be int64 (B={B}, 4) rows [0, 0, U_b, T_b], got {boundary.dtype} "
            f"{tuple(boundary.shape)}"
        )
    if bool((boundary[:, :2] != 0).any()):
        raise ValueError("boundary must start every utterance at (0, 0): columns 0 and 1 must be zero")
    symbol_lens, frame_lens = boundary[:, 2], boundary[:, 3]
    _check_lengths(frame_lens, symbol_lens, T, U)
    if bool((boundary < 0).any()):
        raise ValueError(f"boundary lengths must be >= 0, got {boundary.tolist()}")
    return symbol_lens, frame_lens
