from __future__ import annotations

import functools
import math

import pytest
import torch

from kd import losses
from kd.losses.one_best import (
    gather_node_logits,
    one_best_ce,
    one_best_ce_full,
    one_best_path,
    one_best_path_from_joiner,
    shift_path,
)
from kd.losses.topk import TopK
from kd.models.joiner import Joiner

B, T, U, V, J = 3, 6, 3, 5, 4
FRAME_LENS = [6, 3, 4]
SYMBOL_LENS = [3, 2, 0]
BOUNDARY = torch.tensor([[0, 0, u, t] for u, t in zip(SYMBOL_LENS, FRAME_LENS)])


def _reference_walk(logits: torch.Tensor, b: int) -> list[tuple[int, int]]:
    t, u, path = 0, 0, []
    while t < FRAME_LENS[b]:
        path.append((t, u))
        if int(logits[b, t, u].argmax()) != 0 and u < SYMBOL_LENS[b]:
            u += 1
        else:
            t += 1
    return path


def _check_path(nodes: torch.Tensor, lengths: torch.Tensor, paths: list[list[tuple[int, int]]]) -> None:
    assert nodes.dtype == lengths.dtype == torch.int64
    assert lengths.tolist() == [len(p) for p in paths]
    assert nodes.shape == (B, max(map(len, paths)), 2)
    for b, path in enumerate(paths):
        assert [tuple(n) for n in nodes[b, : len(path)].tolist()] == path
        assert (nodes[b, len(path) :] == 0).all()


def _joiner(seed: int) -> Joiner:
    torch.manual_seed(seed)
    return Joiner(J, J, J, V).double()


def _am_lm(seed: int):
    g = torch.Generator().manual_seed(seed)
    am = 2.0 * torch.randn(B, T, J, generator=g, dtype=torch.float64)
    lm = 2.0 * torch.randn(B, U + 1, J, generator=g, dtype=torch.float64)
    return am.requires_grad_(), lm.requires_grad_()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_path_matches_reference_walk(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, U + 1, V, generator=g, dtype=torch.float64)
    logits[..., 0] += 1.0  # blank about as likely as a symbol
    nodes, lengths = one_best_path(logits, BOUNDARY)
    _check_path(nodes, lengths, [_reference_walk(logits, b) for b in range(B)])


def test_path_edges() -> None:
    symbol_first = torch.zeros(B, T, U + 1, V)
    symbol_first[..., 2] = 1.0  # a non-blank everywhere: climb to U_b, then the last row reads it as blank
    nodes, lengths = one_best_path(symbol_first, BOUNDARY)
    expected = [
        [(0, u) for u in range(SYMBOL_LENS[b])] + [(t, SYMBOL_LENS[b]) for t in range(FRAME_LENS[b])]
        for b in range(B)
    ]
    _check_path(nodes, lengths, expected)
    blank_only = torch.zeros(B, T, U + 1, V)
    blank_only[..., 0] = 1.0  # the walk ends at T_b with no symbol emitted
    nodes, lengths = one_best_path(blank_only, BOUNDARY)
    _check_path(nodes, lengths, [[(t, 0) for t in range(FRAME_LENS[b])] for b in range(B)])


@pytest.mark.parametrize("seed", [3, 4])
def test_path_from_joiner_matches_full_logits(seed: int) -> None:
    joiner = functools.partial(_joiner(seed), project_input=False)
    am, lm = _am_lm(seed)
    logits = joiner(am.unsqueeze(2), lm.unsqueeze(1))
    nodes, lengths = one_best_path_from_joiner(joiner, am, lm, BOUNDARY)
    _check_path(nodes, lengths, [_reference_walk(logits, b) for b in range(B)])


def test_shift_path() -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(B, T, U + 1, V, generator=g)
    nodes, lengths = one_best_path(logits, BOUNDARY)
    assert torch.equal(shift_path(nodes, lengths, 0, BOUNDARY[:, 3]), nodes)
    shifted = shift_path(nodes, lengths, 2, BOUNDARY[:, 3])
    for b in range(B):
        for n in range(nodes.shape[1]):
            t, u = nodes[b, n].tolist()
            want = [min(t + 2, FRAME_LENS[b] - 1), u] if n < lengths[b] else [0, 0]
            assert shifted[b, n].tolist() == want
    with pytest.raises(ValueError, match="shift must be >= 0"):
        shift_path(nodes, lengths, -1, BOUNDARY[:, 3])


def test_gather_node_logits() -> None:
    module = _joiner(6)
    joiner = functools.partial(module, project_input=False)
    am, lm = _am_lm(6)
    nodes = torch.tensor([[[0, 0], [1, 0], [1, 1]], [[2, 3], [5, 2], [0, 0]], [[3, 0], [4, 1], [5, 3]]])
    logits = gather_node_logits(joiner, am, lm, nodes)
    expected = torch.stack(
        [torch.stack([joiner(am[b, t], lm[b, u]) for t, u in nodes[b].tolist()]) for b in range(B)]
    )
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn(B, 3, V, dtype=torch.float64)
    inputs = [am, lm, *module.output_linear.parameters()]
    got = torch.autograd.grad((logits * weights).sum(), inputs)
    want = torch.autograd.grad((expected * weights).sum(), inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="nodes must lie in"):
        gather_node_logits(joiner, am, lm, nodes + torch.tensor([0, 1]))


N = 5
LENGTHS = torch.tensor([5, 2, 0])


def _path_logits(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(B, N, V, generator=g, dtype=torch.float64)


def _reference_ce(student: torch.Tensor, teacher: torch.Tensor, tau: float, k: int | None) -> torch.Tensor:
    """(B, N) CE over the full vocabulary (k None) or over the top-k + rest buckets, from full softmaxes."""
    out = torch.zeros(B, N, dtype=torch.float64)
    for b in range(B):
        for n in range(int(LENGTHS[b])):
            q = torch.softmax(teacher[b, n] / tau, dim=0)
            p = torch.softmax(student[b, n] / tau, dim=0)
            if k is None:
                out[b, n] = -sum(q[v] * torch.log(p[v]) for v in range(V))
                continue
            top = sorted(range(V), key=lambda v: -q[v].item())[:k]
            ce = -sum(q[v] * torch.log(p[v]) for v in top)
            if k < V:
                rest_q = sum(q[v] for v in range(V) if v not in top)
                rest_p = sum(p[v] for v in range(V) if v not in top)
                ce = ce - rest_q * torch.log(rest_p)
            out[b, n] = ce
    return out


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_full_ce_matches_reference(temperature: float) -> None:
    teacher = _path_logits(7)
    student = _path_logits(8).requires_grad_()
    ce = one_best_ce_full(student, teacher, LENGTHS, temperature=temperature, reduction="none")
    expected = _reference_ce(student, teacher, temperature, None)
    torch.testing.assert_close(ce, expected, rtol=1e-10, atol=1e-12)
    total = one_best_ce_full(student, teacher, LENGTHS, temperature=temperature, scale_by_t2=True)
    want = temperature**2 * expected.sum()
    torch.testing.assert_close(total, want, rtol=1e-10, atol=1e-12)
    got_grad = torch.autograd.grad(total, student)[0]
    torch.testing.assert_close(got_grad, torch.autograd.grad(want, student)[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [2, V])
def test_topk_ce_matches_reference(k: int) -> None:
    teacher_logits = _path_logits(9)
    student = _path_logits(10).requires_grad_()
    teacher = losses.topk_from_logits(teacher_logits, k, temperature=1.5)
    ce = one_best_ce(student, teacher, LENGTHS, temperature=1.5, reduction="none")
    expected = _reference_ce(student, teacher_logits, 1.5, k)
    torch.testing.assert_close(ce, expected, rtol=1e-10, atol=1e-12)
    total = one_best_ce(student, teacher, LENGTHS, temperature=1.5)
    got_grad = torch.autograd.grad(total, student)[0]
    torch.testing.assert_close(
        got_grad, torch.autograd.grad(expected.sum(), student)[0], rtol=1e-9, atol=1e-12
    )
    if k == V:
        full = one_best_ce_full(student, teacher_logits, LENGTHS, temperature=1.5)
        torch.testing.assert_close(total, full, rtol=1e-10, atol=1e-12)


def test_ce_is_teacher_entropy_when_student_is_teacher() -> None:
    logits = _path_logits(11)
    entropy = torch.zeros(B, N, dtype=torch.float64)
    for b in range(B):
        for n in range(int(LENGTHS[b])):
            q = torch.softmax(logits[b, n], dim=0)
            entropy[b, n] = -(q * q.log()).sum()
    torch.testing.assert_close(one_best_ce_full(logits, logits, LENGTHS, reduction="none"), entropy)
    top = losses.topk_from_logits(logits, V)
    torch.testing.assert_close(one_best_ce(logits, top, LENGTHS, reduction="none"), entropy)


def test_padding_contributes_nothing() -> None:
    teacher_logits = _path_logits(12)
    teacher = losses.topk_from_logits(teacher_logits, 3)
    student = _path_logits(13).requires_grad_()
    junk_student = student.detach().clone()
    junk_teacher_logits = teacher_logits.clone()
    junk = TopK(teacher.logprobs.clone(), teacher.ids.clone(), teacher.rest.clone())
    for b in range(B):
        n = int(LENGTHS[b])
        junk_student[b, n:] = 1e3
        junk_teacher_logits[b, n:] = -math.inf
        junk.logprobs[b, n:] = math.nan
        junk.ids[b, n:] = -1
        junk.rest[b, n:] = -math.inf
    junk_student.requires_grad_()
    for fn, clean, dirty in (
        (one_best_ce, teacher, junk),
        (one_best_ce_full, teacher_logits, junk_teacher_logits),
    ):
        base = fn(student, clean, LENGTHS)
        other = fn(junk_student, dirty, LENGTHS)
        torch.testing.assert_close(base, other, rtol=0, atol=0)
        grad_base = torch.autograd.grad(base, student)[0]
        grad_other = torch.autograd.grad(other, junk_student)[0]
        torch.testing.assert_close(grad_base, grad_other, rtol=0, atol=0)


def test_bad_input_raises() -> None:
    logits = _path_logits(14)
    teacher = losses.topk_from_logits(logits, 2)
    with pytest.raises(ValueError, match="teacher targets cover nodes"):
        one_best_ce(logits[:, :4], teacher, LENGTHS)
    with pytest.raises(ValueError, match="lengths must be"):
        one_best_ce(logits, teacher, LENGTHS + N)
    with pytest.raises(ValueError, match="must both be"):
        one_best_ce_full(logits, logits[..., :4], LENGTHS)
    with pytest.raises(ValueError, match="student_logits must be"):
        one_best_ce_full(logits[0], logits[0], LENGTHS)
    with pytest.raises(ValueError, match="reduction"):
        one_best_ce_full(logits, logits, LENGTHS, reduction="mean")
    with pytest.raises(ValueError, match="logits must be"):
        one_best_path(logits, BOUNDARY)
    with pytest.raises(ValueError, match="boundary must be int64"):
        one_best_path(torch.zeros(B, T, U + 1, V), BOUNDARY[:2])
    with pytest.raises(ValueError, match="exceed the padded lattice"):
        one_best_path(torch.zeros(B, T - 1, U + 1, V), BOUNDARY)
    with pytest.raises(ValueError, match="blank_id"):
        one_best_path(torch.zeros(B, T, U + 1, V), BOUNDARY, blank_id=V)
