from __future__ import annotations

import math

import pytest
import torch

from kd import losses
from kd.losses.soft_lattice import soft_lattice_kl, soft_lattice_kl_full
from kd.losses.topk import TopK

B, T, U, V = 3, 5, 3, 6
FRAME_LENS = torch.tensor([5, 3, 4])
SYMBOL_LENS = torch.tensor([3, 1, 0])
RANGES = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]).unsqueeze(2) + torch.arange(3)
S = RANGES.shape[2]


def _logits(seed: int, rows: int = U + 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(B, T, rows, V, generator=g, dtype=torch.float64)


def _kl(teacher_row: torch.Tensor, student_row: torch.Tensor, tau: float, k: int | None) -> torch.Tensor:
    """KL over the full vocabulary (k None) or over the teacher's top-k + rest buckets."""
    q = torch.softmax(teacher_row / tau, dim=0)
    p = torch.softmax(student_row / tau, dim=0)
    if k is None or k == V:
        return sum(q[v] * torch.log(q[v] / p[v]) for v in range(V))
    top = sorted(range(V), key=lambda v: -q[v].item())[:k]
    rest_q = sum(q[v] for v in range(V) if v not in top)
    rest_p = sum(p[v] for v in range(V) if v not in top)
    return sum(q[v] * torch.log(q[v] / p[v]) for v in top) + rest_q * torch.log(rest_q / rest_p)


def _reference_full(teacher: torch.Tensor, student: torch.Tensor, tau: float) -> torch.Tensor:
    out = torch.zeros(B, T, U + 1, dtype=torch.float64)
    for b in range(B):
        for t in range(int(FRAME_LENS[b])):
            for u in range(int(SYMBOL_LENS[b]) + 1):
                out[b, t, u] = _kl(teacher[b, t, u], student[b, t, u], tau, None)
    return out


def _reference_pruned(teacher: torch.Tensor, student: torch.Tensor, tau: float, k: int) -> torch.Tensor:
    """teacher: full-lattice logits (B, T, U+1, V); student: pruned (B, T, S, V)."""
    out = torch.zeros(B, T, S, dtype=torch.float64)
    for b in range(B):
        for t in range(int(FRAME_LENS[b])):
            for s in range(S):
                u = int(RANGES[b, t, s])
                if u <= SYMBOL_LENS[b]:
                    out[b, t, s] = _kl(teacher[b, t, u], student[b, t, s], tau, k)
    return out


def _pruned_teacher(teacher: torch.Tensor, k: int, tau: float) -> TopK:
    return losses.topk_from_logits(losses.gather_pruned(teacher, RANGES), k, temperature=tau)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_full_matches_reference(temperature: float) -> None:
    teacher = _logits(0)
    student = _logits(1).requires_grad_()
    kl = soft_lattice_kl_full(student, teacher, FRAME_LENS, SYMBOL_LENS, temperature, reduction="none")
    expected = _reference_full(teacher, student, temperature)
    torch.testing.assert_close(kl, expected, rtol=1e-10, atol=1e-12)
    total = soft_lattice_kl_full(student, teacher, FRAME_LENS, SYMBOL_LENS, temperature, scale_by_t2=True)
    want = temperature**2 * expected.sum()
    torch.testing.assert_close(total, want, rtol=1e-10, atol=1e-12)
    grad = torch.autograd.grad(total, student)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(want, student)[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("k", "temperature"), [(V, 1.0), (V, 2.0), (2, 1.0), (4, 2.0)])
def test_pruned_matches_reference(k: int, temperature: float) -> None:
    teacher = _logits(2)
    student = _logits(3, rows=S).requires_grad_()
    targets = _pruned_teacher(teacher, k, temperature)
    kl = soft_lattice_kl(student, targets, RANGES, FRAME_LENS, SYMBOL_LENS, temperature, reduction="none")
    expected = _reference_pruned(teacher, student, temperature, k)
    torch.testing.assert_close(kl, expected, rtol=1e-10, atol=1e-12)
    total = soft_lattice_kl(student, targets, RANGES, FRAME_LENS, SYMBOL_LENS, temperature)
    grad = torch.autograd.grad(total, student)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(expected.sum(), student)[0], rtol=1e-9, atol=1e-12)


def test_pruned_over_every_row_is_the_full_loss() -> None:
    teacher = _logits(4)
    student = _logits(5)
    every_row = torch.arange(U + 1).expand(B, T, U + 1)
    targets = losses.topk_from_logits(teacher, V)
    pruned = soft_lattice_kl(student, targets, every_row, FRAME_LENS, SYMBOL_LENS)
    full = soft_lattice_kl_full(student, teacher, FRAME_LENS, SYMBOL_LENS)
    torch.testing.assert_close(pruned, full, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [2, V])
def test_zero_when_student_is_teacher(k: int) -> None:
    teacher = _logits(6)
    zero = torch.tensor(0.0, dtype=torch.float64)
    torch.testing.assert_close(soft_lattice_kl_full(teacher, teacher, FRAME_LENS, SYMBOL_LENS), zero)
    pruned = losses.gather_pruned(teacher, RANGES)
    targets = _pruned_teacher(teacher, k, 1.0)
    torch.testing.assert_close(soft_lattice_kl(pruned, targets, RANGES, FRAME_LENS, SYMBOL_LENS), zero)


def test_fp16_teacher() -> None:
    teacher = _logits(7)
    student = _logits(8, rows=S).float().requires_grad_()
    targets = _pruned_teacher(teacher, 3, 1.0)
    half = TopK(targets.logprobs.half(), targets.ids, targets.rest.half())
    kl = soft_lattice_kl(student, half, RANGES, FRAME_LENS, SYMBOL_LENS)
    expected = _reference_pruned(teacher, student.double(), 1.0, 3).sum()
    torch.testing.assert_close(kl.double(), expected, rtol=1e-2, atol=1e-2)
    kl.backward()
    assert torch.isfinite(student.grad).all()
    full = soft_lattice_kl_full(_logits(8).float(), teacher.half(), FRAME_LENS, SYMBOL_LENS)
    assert full.dtype == torch.float32


def test_padding_contributes_nothing() -> None:
    teacher = _logits(9)
    student = _logits(10).requires_grad_()
    pruned_student = _logits(11, rows=S).requires_grad_()
    targets = _pruned_teacher(teacher, 3, 1.0)
    junk_teacher, junk_student = teacher.clone(), student.detach().clone()
    junk_targets = TopK(targets.logprobs.clone(), targets.ids.clone(), targets.rest.clone())
    junk_pruned = pruned_student.detach().clone()
    valid = losses.pruned_node_mask(RANGES, FRAME_LENS, SYMBOL_LENS)
    junk_targets.logprobs[~valid] = math.nan
    junk_targets.ids[~valid] = -1
    junk_targets.rest[~valid] = -math.inf
    junk_pruned[~valid] = 1e3
    full_valid = losses.full_node_mask(FRAME_LENS, SYMBOL_LENS, T, U)
    junk_teacher[~full_valid] = -math.inf
    junk_student[~full_valid] = -1e3
    junk_student.requires_grad_()
    junk_pruned.requires_grad_()
    cases = (
        (soft_lattice_kl_full, (student, teacher), (junk_student, junk_teacher), ()),
        (soft_lattice_kl, (pruned_student, targets), (junk_pruned, junk_targets), (RANGES,)),
    )
    for fn, (s0, t0), (s1, t1), extra in cases:
        base = fn(s0, t0, *extra, FRAME_LENS, SYMBOL_LENS)
        other = fn(s1, t1, *extra, FRAME_LENS, SYMBOL_LENS)
        torch.testing.assert_close(base, other, rtol=0, atol=0)
        g0, g1 = torch.autograd.grad(base, s0)[0], torch.autograd.grad(other, s1)[0]
        torch.testing.assert_close(g0, g1, rtol=0, atol=0)


def test_bad_input_raises() -> None:
    teacher = _logits(12)
    student = _logits(13, rows=S)
    targets = _pruned_teacher(teacher, 3, 1.0)
    with pytest.raises(ValueError, match="student_logits must be"):
        soft_lattice_kl(student, targets, RANGES[:, :, :2], FRAME_LENS, SYMBOL_LENS)
    with pytest.raises(ValueError, match="teacher targets cover nodes"):
        soft_lattice_kl(student[:, :4], targets, RANGES[:, :4], FRAME_LENS - 1, SYMBOL_LENS)
    with pytest.raises(ValueError, match="exceed"):
        soft_lattice_kl(student, targets, RANGES, FRAME_LENS + 1, SYMBOL_LENS)
    with pytest.raises(ValueError, match="must both be"):
        soft_lattice_kl_full(teacher, teacher[..., :4], FRAME_LENS, SYMBOL_LENS)
    with pytest.raises(ValueError, match="exceed the padded lattice"):
        soft_lattice_kl_full(teacher, teacher, FRAME_LENS, SYMBOL_LENS + 1)
    with pytest.raises(ValueError, match="temperature"):
        soft_lattice_kl_full(teacher, teacher, FRAME_LENS, SYMBOL_LENS, temperature=-1.0)
