"""Soft-target lattice distillation (METHODS.md (d) and (e)): KL between the teacher's and the student's
output distributions at every lattice node,

    L_kd = sum over nodes (t, u) of KL(softmax(z^T[t, u] / tau) || softmax(z^S[t, u] / tau)).

Two modes: over the teacher's pruned lattice (its prune ranges (B, T, S) and top-k + rest targets per
node, as the targets generator stores them; soft_lattice_kl), or exactly over the full lattice and
vocabulary for small vocabularies and tests (soft_lattice_kl_full). Both return the SUM over the valid
nodes (reduction="sum"; the caller divides by frames, or by nodes) or the per-node values, zero off the
lattice (reduction="none"). The teacher is detached; fp16 teachers are accepted. scale_by_t2 multiplies the
loss by tau ** 2 (off by default, so the loss is the formula above).
"""

from __future__ import annotations

from torch import Tensor

from kd.losses.lattice import full_node_mask, pruned_node_mask, reduce_nodes
from kd.losses.topk import TopK, node_kl, t2_factor


def soft_lattice_kl(
    student_logits: Tensor,
    teacher: TopK,
    ranges: Tensor,
    frame_lens: Tensor,
    symbol_lens: Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
    reduction: str = "sum",
) -> Tensor:
    """KL over the k+1 buckets at the nodes of the teacher's pruned lattice.

    Args:
        student_logits: (B, T, S, V), the student's joiner at the TEACHER's nodes (t, ranges[b, t, s])
            (e.g. Transducer.pruned_logits(encoder_out, decoder_out, ranges) with the stored ranges).
        teacher: TopK (B, T, S, k), made at `temperature` (topk_from_logits).
        ranges: int64 (B, T, S) the teacher's prune ranges.
        frame_lens: (B,) T_b; symbol_lens: (B,) U_b.
        temperature: divides the student's logits; scale_by_t2, reduction: see the module docstring.

    Returns:
        scalar, or (B, T, S) per node.
    """
    if student_logits.ndim != 4 or ranges.shape != student_logits.shape[:3]:
        raise ValueError(
            f"student_logits must be (B, T, S, V) and ranges (B, T, S), got {tuple(student_logits.shape)} "
            f"and {tuple(ranges.shape)}"
        )
    if teacher.rest.shape != ranges.shape:
        raise ValueError(
            f"teacher targets cover nodes {tuple(teacher.rest.shape)}, ranges {tuple(ranges.shape)}"
        )
    valid = pruned_node_mask(ranges, frame_lens, symbol_lens)
    kl = node_kl(teacher, student_logits, valid, temperature)
    return reduce_nodes(kl * t2_factor(temperature, scale_by_t2), valid, reduction)


def soft_lattice_kl_full(
    student_logits: Tensor,
    teacher_logits: Tensor,
    frame_lens: Tensor,
    symbol_lens: Tensor,
    temperature: float = 1.0,
    scale_by_t2: bool = False,
    reduction: str = "sum",
) -> Tensor:
    """Exact KL over every lattice node and the full vocabulary.

    Args:
        student_logits, teacher_logits: (B, T, U+1, V).
        frame_lens: (B,) T_b; symbol_lens: (B,) U_b.
        temperature, scale_by_t2, reduction: see the module docstring.

    Returns:
        scalar, or (B, T, U+1) per node.
    """
    if student_logits.ndim != 4 or teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"student and teacher logits must both be (B, T, U+1, V), got {tuple(student_logits.shape)} and "
            f"{tuple(teacher_logits.shape)}"
        )
    B, T, U1, _ = student_logits.shape
    valid = full_node_mask(frame_lens, symbol_lens, T, U1 - 1).to(student_logits.device)
    if valid.shape[0] != B:
        raise ValueError(f"frame_lens and symbol_lens must be ({B},), got {tuple(frame_lens.shape)}")
    kl = node_kl(teacher_logits, student_logits, valid, temperature)
    return reduce_nodes(kl * t2_factor(temperature, scale_by_t2), valid, reduction)
