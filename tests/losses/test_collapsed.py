from __future__ import annotations

import functools
import math

import pytest
import torch

from kd import losses
from kd.losses.collapsed import collapsed_kl_full, collapsed_kl_full_chunked, collapsed_kl_pruned
from kd.models.joiner import Joiner

B, T, U, V, J = 3, 5, 3, 6, 4
FRAME_LENS = [5, 3, 4]
SYMBOL_LENS = [3, 1, 0]  # padding in both axes, and an utterance with no symbols
BOUNDARY = torch.tensor([[0, 0, u, t] for u, t in zip(SYMBOL_LENS, FRAME_LENS)])
RANGES = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]).unsqueeze(2) + torch.arange(
    3
)  # (B, T, 3); rows past U_b lie outside the lattice


def _symbols(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(1, V, (B, U), generator=g)
    for b, n in enumerate(SYMBOL_LENS):
        symbols[b, n:] = torch.randint(0, V, (U - n,), generator=g)  # padding holds anything
    return symbols


def _logits(seed: int, rows: int = U + 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(B, T, rows, V, generator=g, dtype=torch.float64)


def _px_py(logits: torch.Tensor, symbols: torch.Tensor, temperature: float = 1.0, rnnt_type: str = "regular"):
    return losses.get_rnnt_logprobs_joint(
        logits / temperature, symbols, 0, rnnt_type=rnnt_type, boundary=BOUNDARY
    )


def _node_kl(student_row: torch.Tensor, teacher_row: torch.Tensor, symbol: int | None, tau: float):
    """KL over [blank, y, rest] (or [blank, rest] when symbol is None) from full softmaxes."""
    p = torch.softmax(student_row / tau, dim=0)
    q = torch.softmax(teacher_row / tau, dim=0)
    if symbol is None:
        p3 = [p[0], 1 - p[0]]
        q3 = [q[0], 1 - q[0]]
    else:
        p3 = [p[0], p[symbol], 1 - p[0] - p[symbol]]
        q3 = [q[0], q[symbol], 1 - q[0] - q[symbol]]
    return sum(qc * torch.log(qc / pc) for qc, pc in zip(q3, p3))


def _reference_full(student: torch.Tensor, teacher: torch.Tensor, symbols: torch.Tensor, tau: float = 1.0):
    out = torch.zeros(B, T, U + 1, dtype=torch.float64)
    for b in range(B):
        for t in range(FRAME_LENS[b]):
            for u in range(SYMBOL_LENS[b] + 1):
                symbol = int(symbols[b, u]) if u < SYMBOL_LENS[b] else None
                out[b, t, u] = _node_kl(student[b, t, u], teacher[b, t, u], symbol, tau)
    return out


def _reference_pruned(student: torch.Tensor, teacher: torch.Tensor, symbols: torch.Tensor, tau: float = 1.0):
    out = torch.zeros(B, T, RANGES.shape[2], dtype=torch.float64)
    for b in range(B):
        for t in range(FRAME_LENS[b]):
            for k in range(RANGES.shape[2]):
                u = int(RANGES[b, t, k])
                if u <= SYMBOL_LENS[b]:
                    symbol = int(symbols[b, u]) if u < SYMBOL_LENS[b] else None
                    out[b, t, k] = _node_kl(student[b, t, k], teacher[b, t, u], symbol, tau)
    return out


def _grad(value: torch.Tensor, inputs):
    return torch.autograd.grad(value, inputs, retain_graph=True)


@pytest.mark.parametrize("student_type", ["regular", "modified"])
def test_full_matches_reference(student_type: str) -> None:
    symbols = _symbols(0)
    teacher = _logits(1)
    student = _logits(2).requires_grad_()
    teacher_px, teacher_py = _px_py(teacher, symbols)
    student_px, student_py = _px_py(student, symbols, rnnt_type=student_type)
    kl = collapsed_kl_full(student_px, student_py, teacher_px, teacher_py, BOUNDARY, reduction="none")
    expected = _reference_full(student, teacher, symbols)
    torch.testing.assert_close(kl, expected, rtol=1e-10, atol=1e-12)
    total = collapsed_kl_full(student_px, student_py, teacher_px, teacher_py, BOUNDARY)
    torch.testing.assert_close(total, expected.sum(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        _grad(total, student)[0], _grad(expected.sum(), student)[0], rtol=1e-9, atol=1e-12
    )


def _joiner(seed: int) -> Joiner:
    torch.manual_seed(seed)
    return Joiner(J, J, J, V).double()


@pytest.mark.parametrize("chunk_frames", [1, 2, T + 3])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_chunked_matches_reference_and_unchunked(chunk_frames: int, temperature: float) -> None:
    symbols = _symbols(3)
    teacher = _logits(4)
    joiner = _joiner(5)
    g = torch.Generator().manual_seed(6)
    am = torch.randn(B, T, J, generator=g, dtype=torch.float64, requires_grad=True)
    lm = torch.randn(B, U + 1, J, generator=g, dtype=torch.float64, requires_grad=True)
    teacher_px, teacher_py = _px_py(teacher, symbols, temperature)
    joiner_fn = functools.partial(joiner, project_input=False)
    loss = collapsed_kl_full_chunked(
        joiner_fn, am, lm, symbols, teacher_px, teacher_py, BOUNDARY, chunk_frames, temperature=temperature
    )
    inputs = [am, lm, *joiner.output_linear.parameters()]
    grads = _grad(loss, inputs)

    logits = joiner_fn(am.unsqueeze(2), lm.unsqueeze(1))
    expected = _reference_full(logits, teacher, symbols, temperature).sum()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, _grad(expected, inputs)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)

    student_px, student_py = _px_py(logits, symbols, temperature)
    unchunked = collapsed_kl_full(student_px, student_py, teacher_px, teacher_py, BOUNDARY)
    torch.testing.assert_close(loss, unchunked, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, _grad(unchunked, inputs)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)

    per_node = collapsed_kl_full_chunked(
        joiner_fn,
        am,
        lm,
        symbols,
        teacher_px,
        teacher_py,
        BOUNDARY,
        chunk_frames,
        temperature=temperature,
        reduction="none",
    )
    assert per_node.shape == (B, T, U + 1)
    with torch.no_grad():
        no_grad = collapsed_kl_full_chunked(
            joiner_fn,
            am,
            lm,
            symbols,
            teacher_px,
            teacher_py,
            BOUNDARY,
            chunk_frames,
            temperature=temperature,
        )
    torch.testing.assert_close(no_grad, expected.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_pruned_matches_reference(temperature: float) -> None:
    symbols = _symbols(7)
    teacher = _logits(8)
    student = _logits(9, rows=RANGES.shape[2]).requires_grad_()
    teacher_px, teacher_py = _px_py(teacher, symbols, temperature)
    kl = collapsed_kl_pruned(
        student, RANGES, symbols, teacher_px, teacher_py, BOUNDARY, temperature=temperature, reduction="none"
    )
    expected = _reference_pruned(student, teacher, symbols, temperature)
    torch.testing.assert_close(kl, expected, rtol=1e-10, atol=1e-12)
    scaled = collapsed_kl_pruned(
        student, RANGES, symbols, teacher_px, teacher_py, BOUNDARY, temperature=temperature, scale_by_t2=True
    )
    torch.testing.assert_close(scaled, temperature**2 * expected.sum(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        _grad(scaled, student)[0], _grad(temperature**2 * expected.sum(), student)[0], rtol=1e-9, atol=1e-12
    )


def test_zero_when_student_is_teacher() -> None:
    symbols = _symbols(10)
    teacher = _logits(11)
    px, py = _px_py(teacher, symbols)
    assert abs(float(collapsed_kl_full(px, py, px.half(), py.half(), BOUNDARY))) < 1e-2
    torch.testing.assert_close(collapsed_kl_full(px, py, px, py, BOUNDARY), torch.tensor(0.0).double())
    pruned = collapsed_kl_pruned(losses.gather_pruned(teacher, RANGES), RANGES, symbols, px, py, BOUNDARY)
    torch.testing.assert_close(pruned, torch.tensor(0.0).double())


def test_padding_contributes_nothing() -> None:
    symbols = _symbols(12)
    teacher = _logits(13)
    student = _logits(14).requires_grad_()
    pruned_student = _logits(15, rows=RANGES.shape[2]).requires_grad_()
    px, py = _px_py(teacher, symbols)
    student_px, student_py = _px_py(student, symbols)
    g = torch.Generator().manual_seed(16)
    junk_px, junk_py = px.clone(), py.clone()
    junk_student = pruned_student.detach().clone()
    for b in range(B):
        junk_px[b, SYMBOL_LENS[b] :] = torch.randn(U - SYMBOL_LENS[b], T + 1, generator=g).double()
        junk_px[b, :, FRAME_LENS[b] :] = -math.inf
        junk_py[b, SYMBOL_LENS[b] + 1 :] = math.nan
        junk_py[b, :, FRAME_LENS[b] :] = torch.randn(U + 1, T - FRAME_LENS[b], generator=g).double()
        junk_student[b, FRAME_LENS[b] :] = 1e3
    junk_student[2, :, 1:] = -1e3  # rows above U_b = 0
    junk_student.requires_grad_()

    for reduction in ("sum", "none"):
        full = collapsed_kl_full(student_px, student_py, px, py, BOUNDARY, reduction=reduction)
        junk_full = collapsed_kl_full(student_px, student_py, junk_px, junk_py, BOUNDARY, reduction=reduction)
        torch.testing.assert_close(full, junk_full, rtol=0, atol=0)
    base = collapsed_kl_pruned(pruned_student, RANGES, symbols, px, py, BOUNDARY)
    junk = collapsed_kl_pruned(junk_student, RANGES, symbols, junk_px, junk_py, BOUNDARY)
    torch.testing.assert_close(base, junk, rtol=0, atol=0)
    grad_base, grad_junk = _grad(base, pruned_student)[0], _grad(junk, junk_student)[0]
    assert torch.isfinite(grad_junk).all()
    torch.testing.assert_close(grad_base, grad_junk, rtol=0, atol=0)


def test_bad_input_raises() -> None:
    symbols = _symbols(17)
    px, py = _px_py(_logits(18), symbols)
    with pytest.raises(ValueError, match="boundary must be int64"):
        collapsed_kl_full(px, py, px, py, BOUNDARY[:2])
    with pytest.raises(ValueError, match="columns 0 and 1 must be zero"):
        collapsed_kl_full(px, py, px, py, BOUNDARY + torch.tensor([0, 1, 0, 0]))
    with pytest.raises(ValueError, match="differs from the teacher's"):
        collapsed_kl_full(px[:, :2], py[:, :3], px, py, BOUNDARY)
    with pytest.raises(ValueError, match="exceed the padded lattice"):
        collapsed_kl_full(px, py, px, py, BOUNDARY + torch.tensor([0, 0, 0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        collapsed_kl_full(px, py, px, py, BOUNDARY, reduction="mean")
    student = _logits(19, rows=RANGES.shape[2])
    with pytest.raises(ValueError, match="ranges"):
        collapsed_kl_pruned(student, RANGES[:, :, :2], symbols, px, py, BOUNDARY)
    with pytest.raises(ValueError, match="symbols must be int64"):
        collapsed_kl_pruned(student, RANGES, symbols[:, :2], px, py, BOUNDARY)
    joiner = functools.partial(_joiner(0), project_input=False)
    am, lm = torch.zeros(B, T, J, dtype=torch.float64), torch.zeros(B, U + 1, J, dtype=torch.float64)
    with pytest.raises(ValueError, match="chunk_frames"):
        collapsed_kl_full_chunked(joiner, am, lm, symbols, px, py, BOUNDARY, 0)
    with pytest.raises(ValueError, match="does not match am/lm"):
        collapsed_kl_full_chunked(joiner, am[:, :4], lm, symbols, px, py, BOUNDARY, 2)
    with pytest.raises(ValueError, match="joiner gave"):
        collapsed_kl_full_chunked(lambda a, b: (a + b).sum(-1), am, lm, symbols, px, py, BOUNDARY, 2)


def test_chunked_keeps_no_full_lattice_logits_for_backward() -> None:
    symbols, vocab = _symbols(20), 40
    torch.manual_seed(0)
    joiner = functools.partial(Joiner(J, J, J, vocab).double(), project_input=False)
    am = torch.randn(B, T, J, dtype=torch.float64, requires_grad=True)
    lm = torch.randn(B, U + 1, J, dtype=torch.float64, requires_grad=True)
    px, py = _px_py(torch.randn(B, T, U + 1, vocab, dtype=torch.float64), symbols)
    saved: list[int] = []

    def pack(x: torch.Tensor) -> torch.Tensor:
        saved.append(x.numel())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss = collapsed_kl_full_chunked(joiner, am, lm, symbols, px, py, BOUNDARY, chunk_frames=1)
    # what backward keeps is at most per-node sized, never a chunk's (B, 1, U+1, V) logits
    assert max(saved) < B * (U + 1) * vocab
    loss.backward()
    assert torch.isfinite(am.grad).all() and torch.isfinite(lm.grad).all()
