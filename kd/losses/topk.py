"""Per-row distribution losses: against a top-k truncated teacher (the storable form of a teacher's
output) or against a full-vocabulary teacher.

A TopK keeps, per row of a (..., V) distribution, the k most likely classes (log-probs and ids) and one
"rest" bucket holding the log of the mass outside them. Losses compare teacher and student over these k+1
buckets: the student's bucket log-probs are computed exactly from its logits (the rest bucket is the
logsumexp of the classes not in ids), so with k = V the bucket losses are the full-vocabulary losses.

Conventions:
    * rest is clamped to >= REST_LOG_FLOOR (-23, about 1e-10 of the mass; exact in fp16, bf16 and fp32) so
      it stays finite in fp16 storage; the losses read rest <= REST_LOG_FLOOR as "no mass outside the k
      classes" (which is what k = V gives).
    * The losses renormalise the teacher's k+1 buckets (softmax over them), so fp16 rounding of a stored
      teacher never makes its distribution sum to anything but 1, and KL stays >= 0.
    * Temperature: `temperature` divides the student's logits. A stored TopK is already a distribution:
      make it with topk_from_logits(teacher_logits, k, temperature) at the same temperature.
    * Teacher tensors may be fp16; the losses compute in the student's dtype, promoted to at least float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

NEG_INF = float("-inf")
REST_LOG_FLOOR = -23.0


@dataclass
class TopK:
    """A distribution over V classes truncated to its k most likely classes plus one "rest" bucket.

    Attributes:
        logprobs: (..., k) float, log-probs of the k most likely classes, descending.
        ids: int64 (..., k) their class ids, distinct within a row.
        rest: (...) float, log of the mass outside those k classes, clamped to >= REST_LOG_FLOOR.
    """

    logprobs: Tensor
    ids: Tensor
    rest: Tensor

    def __post_init__(self) -> None:
        if self.logprobs.ndim < 1 or self.ids.shape != self.logprobs.shape:
            raise ValueError(
                f"TopK ids {tuple(self.ids.shape)} must have the shape of logprobs "
                f"{tuple(self.logprobs.shape)} (..., k)"
            )
        if self.ids.dtype != torch.int64:
            raise TypeError(f"TopK ids must be int64, got {self.ids.dtype}: use .long()")
        if self.rest.shape != self.logprobs.shape[:-1]:
            raise ValueError(
                f"TopK rest {tuple(self.rest.shape)} must be logprobs' shape without the last axis, "
                f"{tuple(self.logprobs.shape[:-1])}"
            )

    @property
    def k(self) -> int:
        """The classes kept per row."""
        return self.logprobs.shape[-1]


def topk_from_logits(logits: Tensor, k: int, temperature: float = 1.0) -> TopK:
    """The k most likely classes of log_softmax(logits / temperature), and the log-mass of the others.

    Args:
        logits: (..., V). k: >= 1; k >= V keeps all V classes (the TopK then has V columns and rest at
            REST_LOG_FLOOR). temperature: > 0.

    Returns:
        TopK with logprobs, ids (..., min(k, V)) and rest (...), in logits' dtype promoted to >= float32.
    """
    if logits.ndim < 1:
        raise ValueError("logits must be (..., V), got a scalar")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_temperature(temperature)
    logp = torch.log_softmax(logits.to(_compute_dtype(logits)) / temperature, dim=-1)
    logprobs, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    rest = torch.logsumexp(logp.scatter(-1, ids, NEG_INF), dim=-1).clamp(min=REST_LOG_FLOOR)
    return TopK(logprobs=logprobs, ids=ids, rest=rest)


def topk_log_probs(logits: Tensor, ids: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """The student's side of the k+1 buckets: exact and differentiable.

    Args:
        logits: (..., V). ids: int64 (..., k), distinct classes in [0, V) per row. temperature: > 0.

    Returns:
        logprobs (..., k): log_softmax(logits / temperature) at ids; rest (...): the log of the mass of every
        other class (logsumexp with ids masked out minus logsumexp of all; -inf when ids cover all V).
        Both in logits' dtype promoted to >= float32.
    """
    if logits.ndim < 1 or ids.shape[:-1] != logits.shape[:-1]:
        raise ValueError(
            f"ids {tuple(ids.shape)} and logits {tuple(logits.shape)} differ before the last axis"
        )
    if ids.dtype != torch.int64:
        raise TypeError(f"ids must be int64, got {ids.dtype}: use .long()")
    V = logits.shape[-1]
    if ids.numel() and bool(((ids < 0) | (ids >= V)).any()):
        raise ValueError(f"ids contain classes outside the vocabulary [0, {V})")
    _check_temperature(temperature)
    scaled = logits.to(_compute_dtype(logits)) / temperature
    normalizers = torch.logsumexp(scaled, dim=-1)
    logprobs = torch.gather(scaled, -1, ids) - normalizers.unsqueeze(-1)
    others = scaled.scatter(-1, ids, NEG_INF)
    # a row with every class in ids has no rest; its logsumexp over only -inf would give NaN gradients
    empty = torch.isneginf(others).all(dim=-1)
    others = others.masked_fill(empty.unsqueeze(-1), 0.0)
    rest = (torch.logsumexp(others, dim=-1) - normalizers).masked_fill(empty, NEG_INF)
    return logprobs, rest


def topk_kl(teacher: TopK, student_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(teacher || student) over the k+1 buckets, per row.

    Args:
        teacher: TopK (..., k) (detached here; fp16 accepted). student_logits: (..., V). temperature: the
            student's (see the module docstring).

    Returns:
        (...) KL, >= 0; 0 where the student's bucket distribution equals the teacher's.
    """
    q, teacher_logp, student_logp = _buckets(teacher, student_logits, temperature)
    return (q * (teacher_logp - student_logp)).sum(dim=-1)


def topk_cross_entropy(teacher: TopK, student_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """-sum_i q_i log p_i over the k+1 buckets, per row (arguments as topk_kl).

    Returns:
        (...) cross-entropy; the teacher's bucket entropy where the student equals the teacher.
    """
    q, _, student_logp = _buckets(teacher, student_logits, temperature)
    return -(q * student_logp).sum(dim=-1)


def fill_invalid(teacher: TopK, valid: Tensor) -> TopK:
    """The teacher with its rows off `valid` replaced by a harmless distribution (ids 0..k-1, equal
    log-probs), so that padding, whatever it holds (-inf, ids of -1), gives finite losses and gradients.

    Args:
        teacher: TopK (..., k) with k <= V. valid: bool (...).
    """
    if valid.shape != teacher.rest.shape:
        raise ValueError(f"valid {tuple(valid.shape)} must be (...) = {tuple(teacher.rest.shape)}")
    invalid = ~valid.to(teacher.rest.device)
    ids = torch.arange(teacher.k, device=teacher.ids.device).expand_as(teacher.ids)
    return TopK(
        logprobs=teacher.logprobs.masked_fill(invalid.unsqueeze(-1), 0.0),
        ids=torch.where(invalid.unsqueeze(-1), ids, teacher.ids),
        rest=teacher.rest.masked_fill(invalid, 0.0),
    )


def softmax_kl(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Full-vocabulary KL(softmax(teacher / tau) || softmax(student / tau)) per row.

    Args:
        teacher_logits: (..., V) (detached here; fp16 accepted). student_logits: (..., V). temperature: > 0.

    Returns:
        (...) KL in the student's dtype promoted to >= float32.
    """
    teacher_logp, student_logp = _full_log_probs(teacher_logits, student_logits, temperature)
    q = teacher_logp.exp()
    # classes the teacher gives no mass (-inf logits) add nothing, and no NaN gradient
    empty = q == 0
    return (q * (teacher_logp.masked_fill(empty, 0.0) - student_logp.masked_fill(empty, 0.0))).sum(dim=-1)


def softmax_cross_entropy(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Full-vocabulary -sum_v softmax(teacher / tau)_v log_softmax(student / tau)_v per row (arguments as
    softmax_kl). Returns (...)."""
    teacher_logp, student_logp = _full_log_probs(teacher_logits, student_logits, temperature)
    q = teacher_logp.exp()
    return -(q * student_logp.masked_fill(q == 0, 0.0)).sum(dim=-1)


def node_kl(
    teacher: TopK | Tensor, student_logits: Tensor, valid: Tensor, temperature: float = 1.0
) -> Tensor:
    """KL(teacher || student) per node, 0 (with no gradient) at the nodes off `valid`, whatever the teacher
    holds there: topk_kl for a TopK teacher, softmax_kl for teacher logits.

    Args:
        teacher: TopK (..., k) or logits (..., V). student_logits: (..., V). valid: bool (...).
    """
    teacher = _fill_teacher(teacher, valid)
    if isinstance(teacher, TopK):
        return topk_kl(teacher, student_logits, temperature).masked_fill(~valid, 0.0)
    return softmax_kl(teacher, student_logits, temperature).masked_fill(~valid, 0.0)


def node_cross_entropy(
    teacher: TopK | Tensor, student_logits: Tensor, valid: Tensor, temperature: float = 1.0
) -> Tensor:
    """Cross-entropy per node, 0 off `valid` (topk_cross_entropy or softmax_cross_entropy; arguments as
    node_kl)."""
    teacher = _fill_teacher(teacher, valid)
    if isinstance(teacher, TopK):
        return topk_cross_entropy(teacher, student_logits, temperature).masked_fill(~valid, 0.0)
    return softmax_cross_entropy(teacher, student_logits, temperature).masked_fill(~valid, 0.0)


def t2_factor(temperature: float, scale_by_t2: bool) -> float:
    """The factor of a KD loss at `temperature`: tau ** 2 with Hinton et al.'s scaling (which keeps the
    gradients' size independent of tau), else 1."""
    _check_temperature(temperature)
    return temperature**2 if scale_by_t2 else 1.0


def _fill_teacher(teacher: TopK | Tensor, valid: Tensor) -> TopK | Tensor:
    if isinstance(teacher, TopK):
        return fill_invalid(teacher, valid)
    if valid.shape != teacher.shape[:-1]:
        raise ValueError(
            f"node mask {tuple(valid.shape)} does not match teacher logits {tuple(teacher.shape)}"
        )
    return teacher.masked_fill(~valid.unsqueeze(-1), 0.0)


def _full_log_probs(
    teacher_logits: Tensor, student_logits: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    if teacher_logits.shape != student_logits.shape or student_logits.ndim < 1:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} and student logits {tuple(student_logits.shape)} "
            "must have one shape (..., V)"
        )
    _check_temperature(temperature)
    dtype = _compute_dtype(student_logits)
    teacher_logp = torch.log_softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)
    student_logp = torch.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    return teacher_logp, student_logp


def _buckets(teacher: TopK, student_logits: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """q, log q and log p over the k+1 buckets, each (..., k+1); log q and log p are 0 where q = 0 so that
    q * (log q - log p) is 0 there with a zero gradient (the student's rest may be -inf when k = V)."""
    if student_logits.shape[:-1] != teacher.logprobs.shape[:-1]:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher top-k {tuple(teacher.logprobs.shape)} "
            "differ before the last axis"
        )
    dtype = _compute_dtype(student_logits)
    student_top, student_rest = topk_log_probs(student_logits, teacher.ids, temperature)
    rest = teacher.rest.detach().to(dtype)
    rest = rest.masked_fill(rest <= REST_LOG_FLOOR, NEG_INF)
    teacher_logp = torch.cat([teacher.logprobs.detach().to(dtype), rest.unsqueeze(-1)], dim=-1)
    teacher_logp = torch.log_softmax(teacher_logp, dim=-1)
    student_logp = torch.cat([student_top, student_rest.unsqueeze(-1)], dim=-1)
    empty = torch.isneginf(teacher_logp)
    return (
        teacher_logp.exp(),
        teacher_logp.masked_fill(empty, 0.0),
        student_logp.masked_fill(empty, 0.0),
    )


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
