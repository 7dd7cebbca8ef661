"""k2's mutual-information recursion: the forward-backward core of every RNN-T loss, in plain PyTorch.

The lattice has nodes (s, t), 0 <= s <= S, 0 <= t <= T, and two kinds of arcs:
    px[b, s, t]  (s, t) -> (s+1, t)    "regular"  topology, px of shape (B, S, T+1)
                 (s, t) -> (s+1, t+1)  "modified" topology, px of shape (B, S, T)
    py[b, s, t]  (s, t) -> (s, t+1)    both topologies,       py of shape (B, S+1, T)
For RNN-T, s counts emitted symbols, px is log P(next symbol) and py is log P(blank). The score of
sequence b is the log-sum over all paths from (s_begin, t_begin) to (s_end, t_end) of the summed arc
log-probs, where boundary[b] = [s_begin, t_begin, s_end, t_end] (default [0, 0, S, T]).

Algorithm (builtin backend): the forward variables alpha of the nodes on one anti-diagonal s + t = n
(regular) or one column t = n (modified) depend only on the previous one, so the recursion is a Python
loop of S+T (or T) steps of three vectorised tensor ops over (B, S+1). The backward variables beta are the
forward variables of the reversed lattice, so they are computed in the same loop, stacked on the batch
axis; the gradients are the arc occupation probabilities exp(alpha[src] + arc + beta[dst] - score),
computed once (in float64) and scaled by the incoming gradient in backward (as k2 does), never by
autograd through the loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from kd.losses import backend

NEG_INF = float("-inf")

logger = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()

# (px, py, boundary (B, 4) int64, need_grad) -> (scores (B,), px_grad or None, py_grad or None); the
# occupations px_grad/py_grad are 0 below flush_threshold() and for a sequence without a finite path.
Kernel = Callable[[Tensor, Tensor, Tensor, bool], tuple[Tensor, Tensor | None, Tensor | None]]


def mutual_information_recursion(
    px: Tensor,
    py: Tensor,
    boundary: Tensor | None = None,
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """The log-sum over all lattice paths, per sequence, with k2's semantics (see the module docstring).

    Args:
        px: (B, S, T+1) for the regular topology or (B, S, T) for the modified one; float.
        py: (B, S+1, T), same dtype and device as px.
        boundary: optional int64 (B, 4), rows [s_begin, t_begin, s_end, t_end] with
            0 <= s_begin <= s_end <= S and 0 <= t_begin <= t_end <= T; None means [0, 0, S, T].
        return_grad: also return (px_grad, py_grad) = d(scores.sum())/d(px, py): the occupation
            probability of every arc (zero outside a sequence's boundary, for a sequence with no finite
            path, and where below 2^24 times the dtype's smallest normal number, ~2e-31 in float32).

    Returns:
        scores (B,), or (scores, (px_grad, py_grad)) if return_grad. A sequence whose every path has a -inf
        arc scores -inf (e.g. the modified topology with fewer frames than symbols).

    Raises:
        ValueError: bad shapes, a boundary outside the tensors, or NaN / +inf in px or py.
    """
    boundary = check_lattice(px, py, boundary)
    kernel = _kernel_for(backend.rnnt_backend(), px.device)
    want_grad = return_grad or (torch.is_grad_enabled() and (px.requires_grad or py.requires_grad))
    scores, px_grad, py_grad = _MutualInformation.apply(px, py, boundary, kernel, want_grad)
    return (scores, (px_grad, py_grad)) if return_grad else scores


def check_lattice(px: Tensor, py: Tensor, boundary: Tensor | None) -> Tensor:
    """Validates the inputs of mutual_information_recursion; returns the boundary, (B, 4) int64."""
    if px.ndim != 3 or py.ndim != 3:
        raise ValueError(f"px and py must be 3-D, got px {tuple(px.shape)} and py {tuple(py.shape)}")
    B, S, T1 = px.shape
    T = py.shape[2]
    if py.shape != (B, S + 1, T) or T1 not in (T, T + 1):
        raise ValueError(
            f"px {tuple(px.shape)} and py {tuple(py.shape)} do not form a lattice: expected px (B, S, T+1) "
            "(regular) or (B, S, T) (modified) and py (B, S+1, T)"
        )
    if px.dtype != py.dtype or not px.is_floating_point():
        raise ValueError(f"px and py must share one floating dtype, got {px.dtype} and {py.dtype}")
    if not _below_inf(px) or not _below_inf(py):
        raise ValueError(
            "px/py (the lattice log-probs) contain NaN or +inf: the joiner output or the features are "
            "broken (check for NaN in the model's activations, or train in float32)"
        )
    return check_boundary(boundary, B, S, T, px.device)


def _below_inf(x: Tensor) -> bool:
    """True if x holds no NaN and no +inf (one reduction: max propagates NaN)."""
    return x.numel() == 0 or bool(x.max() < float("inf"))


def check_boundary(boundary: Tensor | None, B: int, S: int, T: int, device: torch.device) -> Tensor:
    """Validates a k2 boundary against a lattice of S symbols and T frames; returns it as (B, 4) int64
    on `device` ([0, 0, S, T] for every row when None)."""
    if boundary is None:
        return torch.tensor([[0, 0, S, T]], dtype=torch.int64, device=device).expand(B, 4)
    if boundary.dtype != torch.int64:
        raise TypeError(f"boundary must be int64 (torch.long) as in k2, got {boundary.dtype}: use .long()")
    if boundary.shape != (B, 4):
        raise ValueError(f"boundary must be (B, 4) = ({B}, 4), got {tuple(boundary.shape)}")
    boundary = boundary.to(device)
    s_begin, t_begin, s_end, t_end = boundary.unbind(1)
    bad = (s_begin < 0) | (s_begin > s_end) | (s_end > S) | (t_begin < 0) | (t_begin > t_end) | (t_end > T)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"boundary rows {rows} ({boundary[rows].tolist()}) are outside the lattice: need "
            f"0 <= s_begin <= s_end <= S={S} and 0 <= t_begin <= t_end <= T={T}; the lengths you pass must "
            "not exceed the padded tensors"
        )
    return boundary


class _MutualInformation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, px, py, boundary, kernel, want_grad):
        scores, px_grad, py_grad = kernel(px.detach(), py.detach(), boundary, want_grad)
        if want_grad:
            ctx.save_for_backward(px_grad, py_grad)
        else:
            px_grad, py_grad = px.new_empty(0), py.new_empty(0)
        ctx.mark_non_differentiable(px_grad, py_grad)
        return scores, px_grad, py_grad

    @staticmethod
    @once_differentiable
    def backward(ctx, scores_grad, _px_grad_grad, _py_grad_grad):
        px_grad, py_grad = ctx.saved_tensors
        scale = scores_grad.view(-1, 1, 1)
        return px_grad * scale, py_grad * scale, None, None, None


def _kernel_for(name: str, device: torch.device) -> Kernel:
    if name == "builtin":
        return builtin_kernel
    if not backend.supports_device(name, device):
        if (name, device.type) not in _warned:
            _warned.add((name, device.type))
            logger.warning(
                "RNN-T losses: this %s build has no %s support; using the builtin code there", name, device
            )
        return builtin_kernel
    module = backend.backend_module(name)

    def external_kernel(px: Tensor, py: Tensor, boundary: Tensor, need_grad: bool):
        modified = px.shape[2] == py.shape[2]
        impossible = modified & (boundary[:, 2] - boundary[:, 0] > boundary[:, 3] - boundary[:, 1])
        if bool(impossible.any()):
            # k2/fast_rnnt print warnings and return garbage gradients here; an empty box is harmless
            boundary = boundary.masked_fill(impossible.view(-1, 1), 0)
        with torch.no_grad():
            out = module.mutual_information_recursion(
                px.contiguous(), py.contiguous(), boundary.contiguous(), return_grad=need_grad
            )
        scores, (px_grad, py_grad) = out if need_grad else (out, (None, None))
        scores = scores.masked_fill(impossible, NEG_INF)
        if need_grad:  # the builtin kernel's contract: zero below the flush threshold and without a path
            zero = (scores == NEG_INF).view(-1, 1, 1)
            tiny = flush_threshold(px.dtype)
            px_grad = px_grad.masked_fill((px_grad < tiny) | zero, 0.0)
            py_grad = py_grad.masked_fill((py_grad < tiny) | zero, 0.0)
        return scores, px_grad, py_grad

    return external_kernel


def builtin_kernel(
    px: Tensor, py: Tensor, boundary: Tensor, need_grad: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The PyTorch recursion; see the module docstring. Same contract as a backend kernel.

    Runs in float64 whatever the input dtype: occupations are exp(alpha + arc + beta - score), a
    difference of large log-sums that float32 would leave ~1e-4 off, while the loop's small ops cost
    little more in float64 (their fixed cost dominates). Outputs are in the input dtype.
    """
    dtype = px.dtype
    px, py = px.double(), py.double()
    B, S, T1 = px.shape
    T = py.shape[2]
    regular = T1 == T + 1
    s_begin, t_begin, s_end, t_end = boundary.unbind(1)
    # last frame index of an x-arc inside the box: t_end for regular (px has T+1 columns), t_end-1 modified
    x_last = t_end if regular else t_end - 1
    shifted = bool((boundary[:, :2] != 0).any())
    if shifted:  # move every sequence's start node to (0, 0)
        px_f = _reindex(px, _span(s_begin, 1, S, s_begin, s_end - 1), _span(t_begin, 1, T1, t_begin, x_last))
        py_f = _reindex(
            py, _span(s_begin, 1, S + 1, s_begin, s_end), _span(t_begin, 1, T, t_begin, t_end - 1)
        )
    else:
        px_f, py_f = px, py
    pxs, pys = [px_f], [py_f]
    if need_grad:  # the reversed lattice: its node (i, j) is node (s_end - i, t_end - j)
        pxs.append(
            _reindex(px, _span(s_end - 1, -1, S, s_begin, s_end - 1), _span(x_last, -1, T1, t_begin, x_last))
        )
        pys.append(
            _reindex(py, _span(s_end, -1, S + 1, s_begin, s_end), _span(t_end - 1, -1, T, t_begin, t_end - 1))
        )

    nodes = _forward_variables(pxs, pys, regular)  # (B or 2B, S+1, T+1)
    alpha = nodes[:B]
    s_len, t_len = s_end - s_begin, t_end - t_begin
    scores = alpha[torch.arange(B, device=px.device), s_len, t_len]
    if not need_grad:
        return scores.to(dtype), None, None

    zero = torch.zeros_like(s_len)
    if shifted:
        alpha = _reindex(
            alpha, _span(-s_begin, 1, S + 1, zero, s_len), _span(-t_begin, 1, T + 1, zero, t_len)
        )
    # beta[s, t] = the reversed lattice's forward variable at (s_end - s, t_end - t), inside the box only
    beta = _reindex(nodes[B:], _span(s_end, -1, S + 1, zero, s_len), _span(t_end, -1, T + 1, zero, t_len))
    total = scores.masked_fill(scores == NEG_INF, 0.0).view(B, 1, 1)
    if regular:
        px_grad = _occupation(alpha[:, :S] + px + beta[:, 1:] - total, dtype)
    else:
        px_grad = _occupation(alpha[:, :S, :T] + px + beta[:, 1:, 1:] - total, dtype)
    py_grad = _occupation(alpha[:, :, :T] + py + beta[:, :, 1:] - total, dtype)
    return scores.to(dtype), px_grad, py_grad


def _occupation(log_occupation: Tensor, dtype: torch.dtype) -> Tensor:
    """exp() in `dtype`, 0 below flush_threshold(dtype), set directly: exp() is many times slower on
    arguments that give denormals or are -inf than on ordinary ones."""
    cutoff = math.log(flush_threshold(dtype))
    occupation = log_occupation.clamp(min=cutoff).to(dtype).exp_()
    return occupation.masked_fill_(log_occupation < cutoff, 0.0)


def flush_threshold(dtype: torch.dtype) -> float:
    """Occupations below this (2^24 times the smallest normal number of dtype, ~2e-31 in float32) are 0:
    far below the gradient's precision, they turn into denormals in the ops that follow (rnnt_loss_simple
    divides them by its normalisers), and denormals make matmuls ~10x slower on x86 CPUs."""
    return torch.finfo(dtype).tiny * 2.0**24


def _forward_variables(pxs: list[Tensor], pys: list[Tensor], regular: bool) -> Tensor:
    """alpha (B, S+1, T+1) of lattices that start at (0, 0): alpha[b, s, t] = log-sum of the paths to (s, t).

    pxs, pys: parts of the batch ((B_i, S, T+1 or T) and (B_i, S+1, T)), run together and returned stacked.
    The result is a strided view of the recursion's buffer.
    """
    S, T1 = pxs[0].shape[1:]
    T = pys[0].shape[2]
    if regular:  # step n goes from anti-diagonal n to n+1; node s of diagonal n+1 is (s, n+1-s)
        steps, left = S + T, S + 1
        width = left + steps + 2
        # x-arc into node s of diagonal n+1 comes from (s-1, n+1-s); top row: s = 0 has none
        into_x = _diagonals(_batch_last(pxs, top=1, left=left, width=width), steps, start=left + 1)
        into_y = _diagonals(_batch_last(pys, top=0, left=left, width=width), steps, start=left)  # (s, n-s)
    else:  # step n goes from column t = n to n+1
        steps = T
        into_x = _batch_last(pxs, top=1, left=0, width=T).transpose(0, 1)  # arc (s-1, n) -> (s, n+1)
        into_y = _batch_last(pys, top=0, left=0, width=T).transpose(0, 1)  # arc (s, n) -> (s, n+1)
    a = _recursion(into_x, into_y)  # (steps+1, S+2, B): a[n, s+1, b], row 0 padding
    B = a.shape[2]
    if regular:  # node (s, t) is a[s+t, s+1]
        return a.as_strided((B, S + 1, T + 1), (1, (S + 3) * B, (S + 2) * B), B)
    return a.as_strided((B, S + 1, T + 1), (1, B, (S + 2) * B), B)  # node (s, t) is a[t, s+1]


def _recursion(into_x: Tensor, into_y: Tensor) -> Tensor:
    """a[n+1, s] = logaddexp(a[n, s-1] + into_x[n, s], a[n, s] + into_y[n, s]), vectorised over (s, b).

    into_x, into_y: (N, S+1, B), any strides; returns the buffer (N+1, S+2, B): row 0 is padding (-inf),
    row s+1 holds node s, and a[0] is 0 at s = 0 and -inf elsewhere. The batch is the last axis so that
    the slices below are contiguous (this loop is the hot spot: three small ops per step, so their fixed
    cost is what counts).
    """
    N, S1, B = into_x.shape
    a = into_x.new_full((N + 1, S1 + 1, B), NEG_INF)
    a[0, 1] = 0.0
    from_x = into_x.new_empty(S1, B)
    from_y = into_x.new_empty(S1, B)
    # views made in bulk (unbind) rather than one slice at a time: cheaper per step
    below, here = a[:, :-1].unbind(0), a[:, 1:].unbind(0)
    for x, y, prev_below, prev, new in zip(into_x.unbind(0), into_y.unbind(0), below, here, here[1:]):
        torch.add(prev_below, x, out=from_x)
        torch.add(prev, y, out=from_y)
        torch.logaddexp(from_x, from_y, out=new)
    return a


def _batch_last(parts: list[Tensor], top: int, left: int, width: int) -> Tensor:
    """The (B_i, R, C) parts stacked on a last batch axis in a -inf table (top + R, width, sum B_i): part
    rows start at row `top`, columns at `left`."""
    R, C = parts[0].shape[1:]
    table = parts[0].new_full((top + R, width, sum(p.shape[0] for p in parts)), NEG_INF)
    b = 0
    for p in parts:
        table[top:, left : left + C, b : b + p.shape[0]] = p.permute(1, 2, 0)
        b += p.shape[0]
    return table


def _diagonals(table: Tensor, steps: int, start: int) -> Tensor:
    """(R, W, B) -> strided view (steps, R, B) with out[n, i] = table[i, start + n - i]."""
    R, W, B = table.shape
    return table.as_strided((steps, R, B), (B, (W - 1) * B, 1), start * B)


def _span(first: Tensor, step: int, size: int, lo: Tensor, hi: Tensor) -> Tensor:
    """Per-sequence source indices for _reindex, (B, size): first[b] + step * i where that lies in
    [lo[b], hi[b]], else -1 ("no source")."""
    index = first.view(-1, 1) + step * torch.arange(size, device=first.device).view(1, -1)
    valid = (index >= lo.view(-1, 1)) & (index <= hi.view(-1, 1))
    return index.masked_fill(~valid, -1)


def _reindex(m: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """out[b, i, j] = m[b, rows[b, i], cols[b, j]], or -inf where rows or cols is -1."""
    B, R, C = m.shape
    # index -1 lands on an appended -inf row / column
    padded = m.new_full((B, R + 1, C + 1), NEG_INF)
    padded[:, :R, :C] = m
    flat = (rows % (R + 1) * (C + 1)).unsqueeze(2) + (cols % (C + 1)).unsqueeze(1)
    return padded.view(B, -1).gather(1, flat.view(B, -1)).view(flat.shape)
