from __future__ import annotations

import math

import pytest
import torch

from kd import losses
from kd.losses.encoder_logits import encoder_logit_kl
from kd.losses.topk import TopK
from kd.models.joiner import Joiner

B, T, V, D = 3, 6, 7, 5
FRAME_LENS = torch.tensor([6, 2, 0])


def _logits(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(B, T, V, generator=g, dtype=torch.float64)


def _reference(
    teacher: torch.Tensor, student: torch.Tensor, tau: float, k: int | None = None
) -> torch.Tensor:
    """(B, T) KL per frame over the full vocabulary (k None) or the teacher's top-k + rest buckets."""
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(int(FRAME_LENS[b])):
            q = torch.softmax(teacher[b, t] / tau, dim=0)
            p = torch.softmax(student[b, t] / tau, dim=0)
            top = sorted(range(V), key=lambda v: -q[v].item())[: k or V]
            kl = sum(q[v] * torch.log(q[v] / p[v]) for v in top)
            if len(top) < V:
                rest_q = sum(q[v] for v in range(V) if v not in top)
                rest_p = sum(p[v] for v in range(V) if v not in top)
                kl = kl + rest_q * torch.log(rest_q / rest_p)
            out[b, t] = kl
    return out


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_full_teacher_matches_reference(temperature: float) -> None:
    teacher = _logits(0)
    student = _logits(1).requires_grad_()
    kl = encoder_logit_kl(student, teacher, FRAME_LENS, temperature, reduction="none")
    expected = _reference(teacher, student, temperature)
    torch.testing.assert_close(kl, expected, rtol=1e-10, atol=1e-12)
    total = encoder_logit_kl(student, teacher, FRAME_LENS, temperature, scale_by_t2=True)
    want = temperature**2 * expected.sum()
    torch.testing.assert_close(total, want, rtol=1e-10, atol=1e-12)
    grad = torch.autograd.grad(total, student)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(want, student)[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, V])
def test_topk_teacher_matches_reference(k: int) -> None:
    teacher = _logits(2)
    student = _logits(3).requires_grad_()
    targets = losses.topk_from_logits(teacher, k, temperature=1.5)
    kl = encoder_logit_kl(student, targets, FRAME_LENS, 1.5, reduction="none")
    expected = _reference(teacher, student, 1.5, k)
    torch.testing.assert_close(kl, expected, rtol=1e-10, atol=1e-12)
    grad = torch.autograd.grad(kl.sum(), student)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(expected.sum(), student)[0], rtol=1e-9, atol=1e-12)
    if k == V:
        full = encoder_logit_kl(student, teacher, FRAME_LENS, 1.5, reduction="none")
        torch.testing.assert_close(kl, full, rtol=1e-10, atol=1e-12)


def test_gradients_reach_the_student_joiner_only() -> None:
    torch.manual_seed(4)
    teacher_joiner, student_joiner = Joiner(D, D, D, V).double(), Joiner(D, D, D, V).double()
    h = torch.randn(B, T, D, dtype=torch.float64)
    loss = encoder_logit_kl(student_joiner.encoder_logits(h), teacher_joiner.encoder_logits(h), FRAME_LENS)
    loss.backward()
    assert all(p.grad is None for p in teacher_joiner.parameters())
    assert (
        student_joiner.encoder_proj.weight.grad is not None
        and student_joiner.decoder_proj.weight.grad is None
    )


def test_zero_when_student_is_teacher() -> None:
    logits = _logits(5)
    zero = torch.tensor(0.0, dtype=torch.float64)
    torch.testing.assert_close(encoder_logit_kl(logits, logits, FRAME_LENS), zero)
    torch.testing.assert_close(encoder_logit_kl(logits, losses.topk_from_logits(logits, 2), FRAME_LENS), zero)


def test_padding_contributes_nothing() -> None:
    teacher = _logits(6)
    student = _logits(7).requires_grad_()
    targets = losses.topk_from_logits(teacher, 3)
    junk_teacher, junk_student = teacher.clone(), student.detach().clone()
    junk_targets = TopK(targets.logprobs.clone(), targets.ids.clone(), targets.rest.clone())
    for b in range(B):
        n = int(FRAME_LENS[b])
        junk_teacher[b, n:] = -math.inf
        junk_student[b, n:] = 1e3
        junk_targets.logprobs[b, n:] = math.nan
        junk_targets.ids[b, n:] = V
    junk_student.requires_grad_()
    for clean, dirty in ((teacher, junk_teacher), (targets, junk_targets)):
        base = encoder_logit_kl(student, clean, FRAME_LENS)
        other = encoder_logit_kl(junk_student, dirty, FRAME_LENS)
        torch.testing.assert_close(base, other, rtol=0, atol=0)
        g0, g1 = torch.autograd.grad(base, student)[0], torch.autograd.grad(other, junk_student)[0]
        torch.testing.assert_close(g0, g1, rtol=0, atol=0)


def test_fp16_teacher() -> None:
    teacher = _logits(8)
    student = _logits(9).float().requires_grad_()
    kl = encoder_logit_kl(student, teacher.half(), FRAME_LENS)
    assert kl.dtype == torch.float32
    torch.testing.assert_close(
        kl.double(), _reference(teacher, student.double(), 1.0).sum(), rtol=1e-2, atol=1e-2
    )


def test_bad_input_raises() -> None:
    logits = _logits(10)
    with pytest.raises(ValueError, match="student_logits must be"):
        encoder_logit_kl(logits[0], logits[0], FRAME_LENS)
    with pytest.raises(ValueError, match="does not match the student's encoder logits"):
        encoder_logit_kl(logits, logits[:, :4], FRAME_LENS)
    with pytest.raises(ValueError, match="does not match the student's encoder logits"):
        encoder_logit_kl(logits, losses.topk_from_logits(logits[:2], 2), FRAME_LENS)
    with pytest.raises(ValueError, match="frame_lens must be"):
        encoder_logit_kl(logits, logits, FRAME_LENS + T)
    with pytest.raises(ValueError, match="reduction"):
        encoder_logit_kl(logits, logits, FRAME_LENS, reduction="mean")
