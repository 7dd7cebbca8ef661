"""One-best-path distillation (METHODS.md (c), Yang, Li and Woodland 2022).

The teacher's one-best path through the lattice of the reference transcript is a greedy walk from node
(0, 0): at (t, u) take k = argmax z[t, u]; the blank moves to (t+1, u), any other class to (t, u+1). On an
utterance's last row u = U_b no symbol is left, so a non-blank argmax there is read as the blank (the walk
moves to (t+1, u)); the walk ends when t reaches T_b (a node (T_b, u) does not exist), whether or not
all U_b symbols were emitted. A path therefore visits T_b + (symbols emitted) <= T_b + U_b nodes, the
first (0, 0), each one step right or up from the one before. A non-blank argmax counts as the next
reference symbol even if it is another class: the path follows the transcript's lattice.

The loss is the cross-entropy of the student against the teacher over the path's nodes,

    L_kd = sum over path nodes (t, u) of CE(softmax(z^T[t, u] / tau), log_softmax(z^S[t, u] / tau)),

over the full vocabulary (one_best_ce_full) or over the stored top-k + rest buckets (one_best_ce, equal to
the full one when k = V). Both return the SUM over the valid path nodes (reduction="sum"; the caller
divides by frames) or the per-node values (B, N), zero past each path's length (reduction="none").
scale_by_t2 multiplies by tau ** 2 (off by default). The teacher is detached; fp16 teachers are accepted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from kd.losses.lattice import lengths_from_boundary, reduce_nodes
from kd.losses.topk import TopK, node_cross_entropy, t2_factor

Joiner = Callable[[Tensor, Tensor], Tensor]


def one_best_path(logits: Tensor, boundary: Tensor, blank_id: int = 0) -> tuple[Tensor, Tensor]:
    """The greedy one-best path through full-lattice logits (see the module docstring for the walk).

    Args:
        logits: (B, T, U+1, V) the teacher's joiner over the reference transcript's lattice.
        boundary: int64 (B, 4) [0, 0, U_b, T_b].
        blank_id: the blank.

    Returns:
        nodes: int64 (B, N, 2) the (t, u) of each path node in walk order, (0, 0) past the path's end;
            N = max_b lengths[b].
        lengths: int64 (B,) the nodes on each path.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, U+1, V), got {tuple(logits.shape)}")
    B, T, U1, V = logits.shape
    symbol_lens, frame_lens = lengths_from_boundary(boundary, B, T, U1 - 1)
    _check_blank(blank_id, V)
    with torch.no_grad():
        best = logits.argmax(dim=-1)  # (B, T, U+1)
        batch = torch.arange(B, device=logits.device)
        return _walk(lambda t, u: best[batch, t, u], frame_lens, symbol_lens, T, blank_id)


def one_best_path_from_joiner(
    joiner: Joiner, am: Tensor, lm: Tensor, boundary: Tensor, blank_id: int = 0
) -> tuple[Tensor, Tensor]:
    """one_best_path without the full lattice: one joiner call per step, on one node per utterance.

    Args:
        joiner: (am (B, J), lm (B, J)) -> logits (B, V) on projected inputs, e.g.
            functools.partial(model.joiner, project_input=False).
        am: (B, T, J) projected encoder output; lm: (B, U+1, J) projected decoder output.
        boundary, blank_id: as one_best_path.

    Returns:
        nodes (B, N, 2), lengths (B,): as one_best_path.
    """
    if am.ndim != 3 or lm.ndim != 3 or am.shape[0] != lm.shape[0] or am.shape[2] != lm.shape[2]:
        raise ValueError(f"am must be (B, T, J) and lm (B, U+1, J), got {tuple(am.shape)}, {tuple(lm.shape)}")
    B, T, _ = am.shape
    symbol_lens, frame_lens = lengths_from_boundary(boundary, B, T, lm.shape[1] - 1)
    batch = torch.arange(B, device=am.device)

    def best_at(t: Tensor, u: Tensor) -> Tensor:
        logits = joiner(am[batch, t], lm[batch, u])
        if logits.ndim != 2 or logits.shape[0] != B:
            raise ValueError(f"joiner gave {tuple(logits.shape)} for one node per utterance; expected (B, V)")
        _check_blank(blank_id, logits.shape[1])
        return logits.argmax(dim=-1)

    with torch.no_grad():
        return _walk(best_at, frame_lens, symbol_lens, T, blank_id)


def shift_path(nodes: Tensor, lengths: Tensor, shift: int, frame_lens: Tensor) -> Tensor:
    """The path moved `shift` frames later, for a streaming student that sees less future context.

    Node (t, u) becomes (min(t + shift, T_b - 1), u): the nodes pushed past the utterance's last frame stay
    on it, so every node (and its stored target) is kept; the blank steps among them then share one node.

    Args:
        nodes: int64 (B, N, 2) (t, u) from one_best_path. lengths: (B,) nodes per path.
        shift: >= 0 frames. frame_lens: (B,) T_b.

    Returns:
        int64 (B, N, 2), padding left at (0, 0).
    """
    if nodes.ndim != 3 or nodes.shape[2] != 2 or lengths.shape != (nodes.shape[0],):
        raise ValueError(
            f"nodes must be (B, N, 2) and lengths (B,), got {tuple(nodes.shape)}, {tuple(lengths.shape)}"
        )
    if frame_lens.shape != lengths.shape:
        raise ValueError(f"frame_lens must be (B,) = {tuple(lengths.shape)}, got {tuple(frame_lens.shape)}")
    if shift < 0:
        raise ValueError(f"shift must be >= 0 frames, got {shift}")
    valid = _path_mask(lengths, nodes.shape[1])
    last = (frame_lens.to(nodes.device).view(-1, 1) - 1).clamp(min=0)
    t = torch.minimum(nodes[:, :, 0] + shift, last).masked_fill(~valid, 0)
    return torch.stack([t, nodes[:, :, 1]], dim=2)


def gather_node_logits(joiner: Joiner, am: Tensor, lm: Tensor, nodes: Tensor) -> Tensor:
    """The joiner at the path nodes only.

    Args:
        joiner: (am (B, N, J), lm (B, N, J)) -> logits (B, N, V) on projected inputs, e.g.
            functools.partial(model.joiner, project_input=False).
        am: (B, T, J) projected encoder output; lm: (B, U+1, J) projected decoder output.
        nodes: int64 (B, N, 2) (t, u), within [0, T) x [0, U].

    Returns:
        (B, N, V) logits; differentiable w.r.t. am, lm and the joiner.
    """
    if am.ndim != 3 or lm.ndim != 3 or am.shape[0] != lm.shape[0] or am.shape[2] != lm.shape[2]:
        raise ValueError(f"am must be (B, T, J) and lm (B, U+1, J), got {tuple(am.shape)}, {tuple(lm.shape)}")
    B, T, J = am.shape
    if nodes.dtype != torch.int64 or nodes.ndim != 3 or nodes.shape[0] != B or nodes.shape[2] != 2:
        raise ValueError(f"nodes must be int64 (B={B}, N, 2), got {nodes.dtype} {tuple(nodes.shape)}")
    t, u = nodes.unbind(2)
    if nodes.numel() and (bool(((t < 0) | (t >= T)).any()) or bool(((u < 0) | (u >= lm.shape[1])).any())):
        raise ValueError(f"nodes must lie in [0, {T}) x [0, {lm.shape[1]}) (frames x rows of am and lm)")
    N = nodes.shape[1]
    am_nodes = torch.gather(am, 1, t.unsqueeze(2).expand(B, N, J))
    lm_nodes = torch.gather(lm, 1, u.unsqueeze(2).expand(B, N, J))
    return joiner(am_nodes, lm_nodes)


def one_best_ce(
    student_logits: Tensor,
    teacher: TopK,
    lengths: Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
    reduction: str = "sum",
) -> Tensor:
    """Cross-entropy against the teacher's top-k targets over the k+1 buckets at the path nodes.

    Args:
        student_logits: (B, N, V) the student's joiner at the path nodes (gather_node_logits).
        teacher: TopK (B, N, k), made at `temperature` (topk_from_logits). lengths: (B,) nodes per path.
        temperature, scale_by_t2, reduction: see the module docstring.

    Returns:
        scalar, or (B, N).
    """
    valid = _check_path_logits(student_logits, teacher.rest.shape, lengths)
    ce = node_cross_entropy(teacher, student_logits, valid, temperature)
    return reduce_nodes(ce * t2_factor(temperature, scale_by_t2), valid, reduction)


def one_best_ce_full(
    student_logits: Tensor,
    teacher_logits: Tensor,
    lengths: Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
    reduction: str = "sum",
) -> Tensor:
    """Cross-entropy against the teacher over the full vocabulary at the path nodes.

    Args:
        student_logits, teacher_logits: (B, N, V). lengths: (B,) nodes per path.
        temperature, scale_by_t2, reduction: see the module docstring.

    Returns:
        scalar, or (B, N).
    """
    valid = _check_path_logits(student_logits, teacher_logits.shape[:-1], lengths)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} and student logits {tuple(student_logits.shape)} "
            "must both be (B, N, V)"
        )
    ce = node_cross_entropy(teacher_logits, student_logits, valid, temperature)
    return reduce_nodes(ce * t2_factor(temperature, scale_by_t2), valid, reduction)


def _walk(
    best_at: Callable[[Tensor, Tensor], Tensor],
    frame_lens: Tensor,
    symbol_lens: Tensor,
    T: int,
    blank_id: int,
) -> tuple[Tensor, Tensor]:
    """All utterances' walks in lockstep; best_at(t (B,), u (B,)) -> (B,) argmax class at those nodes."""
    B = frame_lens.shape[0]
    t = torch.zeros(B, dtype=torch.int64, device=frame_lens.device)
    u = torch.zeros_like(t)
    lengths = torch.zeros_like(t)
    steps = []
    active = t < frame_lens
    while bool(active.any()):
        steps.append(torch.stack([t, u], dim=1).masked_fill(~active.unsqueeze(1), 0))
        lengths += active
        # finished walks sit at t = T_b, which may be T: any real frame will do for them
        best = best_at(t.clamp(max=T - 1), u)
        emit = active & (best != blank_id) & (u < symbol_lens)
        u = u + emit
        t = t + (active & ~emit)
        active = t < frame_lens
    nodes = torch.stack(steps, dim=1) if steps else t.new_zeros(B, 0, 2)
    return nodes, lengths


def _check_blank(blank_id: int, V: int) -> None:
    if not 0 <= blank_id < V:
        raise ValueError(f"blank_id={blank_id} is outside the vocabulary [0, {V})")


def _path_mask(lengths: Tensor, N: int) -> Tensor:
    """bool (B, N): n < lengths[b]."""
    return torch.arange(N, device=lengths.device).view(1, N) < lengths.view(-1, 1)


def _check_path_logits(student_logits: Tensor, teacher_nodes: torch.Size, lengths: Tensor) -> Tensor:
    """The (B, N) path-node mask, after checking the shapes."""
    if student_logits.ndim != 3:
        raise ValueError(f"student_logits must be (B, N, V), got {tuple(student_logits.shape)}")
    B, N, _ = student_logits.shape
    if tuple(teacher_nodes) != (B, N):
        raise ValueError(
            f"teacher targets cover nodes {tuple(teacher_nodes)}, the student's (B, N) = {(B, N)}"
        )
    if lengths.shape != (B,) or bool((lengths > N).any()) or bool((lengths < 0).any()):
        raise ValueError(f"lengths must be (B,) = ({B},) within [0, N={N}], got {lengths.tolist()}")
    return _path_mask(lengths.to(student_logits.device), N)
