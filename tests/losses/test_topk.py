from __future__ import annotations

import math

import pytest
import torch

from kd import losses
from kd.losses.topk import REST_LOG_FLOOR, TopK

ROWS, V = 5, 7


def _logits(seed: int, rows: int = ROWS, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(rows, V, generator=g, dtype=dtype)


def _softmax(row: torch.Tensor) -> torch.Tensor:
    e = torch.exp(row - row.max())
    return e / e.sum()


def _reference_buckets(teacher: TopK, student_logits: torch.Tensor, temperature: float):
    """Per row: the teacher's k+1 bucket probabilities and the student's, from a full softmax."""
    q_rows, p_rows = [], []
    for r in range(student_logits.shape[0]):
        p = _softmax(student_logits[r] / temperature)
        ids = teacher.ids[r].tolist()
        p_top = torch.stack([p[i] for i in ids])
        p_rest = sum((p[v] for v in range(V) if v not in ids), p.new_zeros(()))
        q_top = teacher.logprobs[r].double().exp()
        q_rest = teacher.rest[r].double().exp() if len(ids) < V else torch.zeros((), dtype=torch.float64)
        q_rows.append(torch.cat([q_top, q_rest.view(1)]))
        p_rows.append(torch.cat([p_top, p_rest.view(1)]))
    return q_rows, p_rows


def _reference_kl(teacher: TopK, student_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    out = []
    for q, p in zip(*_reference_buckets(teacher, student_logits, temperature)):
        out.append(sum((q[i] * torch.log(q[i] / p[i]) for i in range(len(q)) if q[i] > 0), p.new_zeros(())))
    return torch.stack(out)


def _reference_ce(teacher: TopK, student_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    out = []
    for q, p in zip(*_reference_buckets(teacher, student_logits, temperature)):
        out.append(sum((-q[i] * torch.log(p[i]) for i in range(len(q)) if q[i] > 0), p.new_zeros(())))
    return torch.stack(out)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_from_logits(temperature: float) -> None:
    logits = _logits(0)
    top = losses.topk_from_logits(logits, 3, temperature=temperature)
    assert top.logprobs.shape == top.ids.shape == (ROWS, 3) and top.rest.shape == (ROWS,)
    for r in range(ROWS):
        p = _softmax(logits[r] / temperature)
        order = sorted(range(V), key=lambda v: -p[v].item())
        assert top.ids[r].tolist() == order[:3]
        torch.testing.assert_close(top.logprobs[r], torch.log(p[order[:3]]), rtol=1e-12, atol=1e-12)
        want_rest = math.log(sum(p[v].item() for v in order[3:]))
        assert top.rest[r].item() == pytest.approx(want_rest, abs=1e-12)


def test_topk_from_logits_with_k_at_least_v() -> None:
    logits = _logits(1)
    for k in (V, V + 3):
        top = losses.topk_from_logits(logits, k)
        assert top.k == V and (top.rest == REST_LOG_FLOOR).all()
        assert sorted(top.ids[0].tolist()) == list(range(V))
    with pytest.raises(ValueError, match="k must be >= 1"):
        losses.topk_from_logits(logits, 0)


def test_topk_log_probs_value_and_grad() -> None:
    logits = _logits(2).requires_grad_()
    ids = torch.tensor([[0, 3], [6, 1], [2, 5], [4, 0], [1, 2]])
    logprobs, rest = losses.topk_log_probs(logits, ids, temperature=1.5)
    expected_top, expected_rest = [], []
    for r in range(ROWS):
        p = _softmax(logits[r] / 1.5)
        expected_top.append(torch.log(torch.stack([p[i] for i in ids[r].tolist()])))
        expected_rest.append(torch.log(sum(p[v] for v in range(V) if v not in ids[r].tolist())))
    expected_top, expected_rest = torch.stack(expected_top), torch.stack(expected_rest)
    torch.testing.assert_close(logprobs, expected_top, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rest, expected_rest, rtol=1e-12, atol=1e-12)
    weights = torch.randn(ROWS, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((logprobs * weights[:, :2]).sum() + (rest * weights[:, 2]).sum(), logits)
    (want,) = torch.autograd.grad(
        (expected_top * weights[:, :2]).sum() + (expected_rest * weights[:, 2]).sum(), logits
    )
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


def test_topk_log_probs_without_rest_has_finite_grad() -> None:
    logits = _logits(3).requires_grad_()
    ids = torch.arange(V).repeat(ROWS, 1)
    logprobs, rest = losses.topk_log_probs(logits, ids)
    assert torch.isneginf(rest).all()
    (grad,) = torch.autograd.grad(logprobs[:, 0].sum(), logits)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_kl_with_k_equal_v_is_the_full_kl(temperature: float) -> None:
    teacher_logits = _logits(4)
    student = _logits(5).requires_grad_()
    kl = losses.topk_kl(losses.topk_from_logits(teacher_logits, V, temperature), student, temperature)
    expected = []
    for r in range(ROWS):
        q = _softmax(teacher_logits[r] / temperature)
        p = _softmax(student[r] / temperature)
        expected.append(sum(q[v] * torch.log(q[v] / p[v]) for v in range(V)))
    expected = torch.stack(expected)
    torch.testing.assert_close(kl, expected, rtol=1e-10, atol=1e-12)
    (grad,) = torch.autograd.grad(kl.sum(), student)
    (want,) = torch.autograd.grad(expected.sum(), student)
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_kl_and_ce_with_k_below_v(k: int) -> None:
    teacher = losses.topk_from_logits(_logits(6), k, temperature=2.0)
    student = _logits(7).requires_grad_()
    for fn, reference in ((losses.topk_kl, _reference_kl), (losses.topk_cross_entropy, _reference_ce)):
        value = fn(teacher, student, temperature=2.0)
        expected = reference(teacher, student, 2.0)
        torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
        (grad,) = torch.autograd.grad(value.sum(), student)
        (want,) = torch.autograd.grad(expected.sum(), student)
        torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [2, V])
def test_student_equal_to_teacher(k: int) -> None:
    logits = _logits(8)
    teacher = losses.topk_from_logits(logits, k)
    torch.testing.assert_close(losses.topk_kl(teacher, logits), torch.zeros(ROWS, dtype=torch.float64))
    q = torch.cat([teacher.logprobs, teacher.rest.unsqueeze(1)], dim=1).exp()
    if k == V:
        q = q[:, :V]
    entropy = -(q * q.log()).sum(dim=1)
    torch.testing.assert_close(losses.topk_cross_entropy(teacher, logits), entropy)


def test_fp16_teacher() -> None:
    teacher = losses.topk_from_logits(_logits(9), 3)
    half = TopK(teacher.logprobs.half(), teacher.ids, teacher.rest.half())
    student = _logits(10, dtype=torch.float32).requires_grad_()
    kl = losses.topk_kl(half, student)
    assert kl.dtype == torch.float32
    torch.testing.assert_close(kl.double(), _reference_kl(teacher, student.double()), rtol=1e-2, atol=1e-3)
    assert (kl >= 0).all()
    kl.sum().backward()
    assert torch.isfinite(student.grad).all()


def test_bad_shapes_raise() -> None:
    teacher = losses.topk_from_logits(_logits(11), 3)
    with pytest.raises(ValueError, match="differ before the last axis"):
        losses.topk_kl(teacher, _logits(12, rows=ROWS + 1))
    with pytest.raises(ValueError, match="must have the shape of logprobs"):
        TopK(teacher.logprobs, teacher.ids[:, :2], teacher.rest)
    with pytest.raises(ValueError, match="without the last axis"):
        TopK(teacher.logprobs, teacher.ids, teacher.rest[:2])
    with pytest.raises(TypeError, match="int64"):
        TopK(teacher.logprobs, teacher.ids.int(), teacher.rest)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        losses.topk_log_probs(_logits(12), teacher.ids + V)
    with pytest.raises(ValueError, match="temperature"):
        losses.topk_kl(teacher, _logits(12), temperature=0.0)
