from __future__ import annotations

import pytest
import torch

from kd.losses import mutual_information_recursion
from kd.losses.mutual_information import flush_threshold

from .brute_force import mi_scores
from .conftest import load_reference, reference_files, tolerance

BOUNDARIES = {
    "none": None,
    "lengths": [[0, 0, 4, 6], [0, 0, 2, 3], [0, 0, 0, 5]],
    "begins": [[1, 2, 4, 6], [2, 0, 3, 4], [0, 3, 1, 3]],
}


def _lattice(regular: bool, B: int = 3, S: int = 4, T: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(B, S, T + 1 if regular else T, generator=g, dtype=torch.float64)
    py = torch.randn(B, S + 1, T, generator=g, dtype=torch.float64)
    if regular:
        px[:, :, T] = float("-inf")  # as the RNN-T lattice has
    return px, py


@pytest.mark.parametrize("regular", [True, False], ids=["regular", "modified"])
@pytest.mark.parametrize("bnd", list(BOUNDARIES))
def test_scores_and_occupations_match_brute_force(backend: str, regular: bool, bnd: str) -> None:
    px, py = _lattice(regular)
    boundary = BOUNDARIES[bnd]
    weights = torch.tensor([0.5, -2.0, 1.5], dtype=torch.float64)

    px_ref, py_ref = px.clone().requires_grad_(), py.clone().requires_grad_()
    expected = mi_scores(px_ref, py_ref, boundary)
    px_occ, py_occ = torch.autograd.grad(expected.sum(), [px_ref, py_ref])
    px_w, py_w = torch.autograd.grad(mi_scores(px_ref, py_ref, boundary) @ weights, [px_ref, py_ref])

    px_in, py_in = px.clone().requires_grad_(), py.clone().requires_grad_()
    boundary_t = torch.tensor(boundary) if boundary is not None else None
    scores, (px_grad, py_grad) = mutual_information_recursion(px_in, py_in, boundary_t, return_grad=True)
    (scores @ weights).backward()

    torch.testing.assert_close(scores, expected.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(px_grad, px_occ, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(py_grad, py_occ, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(px_in.grad, px_w, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(py_in.grad, py_w, rtol=1e-10, atol=1e-10)


def test_occupations_are_path_probabilities() -> None:
    """Every path crosses each frame once (regular: one blank per frame) and emits each symbol once."""
    px, py = _lattice(regular=True)
    boundary = torch.tensor(BOUNDARIES["lengths"])
    _, (px_grad, py_grad) = mutual_information_recursion(px, py, boundary, return_grad=True)
    s_len, t_len = boundary[:, 2] - boundary[:, 0], boundary[:, 3] - boundary[:, 1]
    torch.testing.assert_close(py_grad.sum(dim=(1, 2)), t_len.double())
    torch.testing.assert_close(px_grad.sum(dim=(1, 2)), s_len.double())


@pytest.mark.parametrize("regular", [True, False], ids=["regular", "modified"])
def test_gradcheck(backend: str, regular: bool) -> None:
    px, py = _lattice(regular, B=2, S=2, T=3, seed=1)
    if regular:
        px[:, :, 3] = 0.0  # finite, so that finite differences see every entry
    boundary = torch.tensor([[0, 0, 2, 3], [1, 1, 2, 3]])
    px.requires_grad_()
    py.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: mutual_information_recursion(a, b, boundary), (px, py))


@pytest.mark.parametrize("name", reference_files("mi_"))
def test_k2_reference(backend: str, name: str) -> None:
    d = load_reference(name)
    px, py = d["in_px"].clone().requires_grad_(), d["in_py"].clone().requires_grad_()
    scores, (px_grad, py_grad) = mutual_information_recursion(px, py, d.get("in_boundary"), return_grad=True)
    (scores * d["in_w"]).sum().backward()
    tol = tolerance(d)
    torch.testing.assert_close(scores, d["out_scores"], **tol)
    torch.testing.assert_close(px_grad, d["out_px_grad"], **tol)
    torch.testing.assert_close(py_grad, d["out_py_grad"], **tol)
    torch.testing.assert_close(px.grad, d["grad_px"], **tol)
    torch.testing.assert_close(py.grad, d["grad_py"], **tol)


def test_return_grad_without_requires_grad(backend: str) -> None:
    px, py = _lattice(regular=True)
    scores, (px_grad, py_grad) = mutual_information_recursion(px, py, return_grad=True)
    assert scores.shape == (3,) and px_grad.shape == px.shape and py_grad.shape == py.shape
    assert not scores.requires_grad


def test_no_path_scores_minus_inf_with_zero_gradient(backend: str) -> None:
    """Modified topology with fewer frames than symbols in row 0; row 1 is blocked by -inf arcs."""
    px, py = _lattice(regular=False)
    py[1, :, 2] = float("-inf")  # no blank on frame 2 ...
    px[1, :, 2] = float("-inf")  # ... and no symbol either: frame 2 cannot be crossed
    boundary = torch.tensor([[0, 0, 4, 3], [0, 0, 2, 6], [0, 0, 2, 6]])
    px.requires_grad_()
    scores, (px_grad, py_grad) = mutual_information_recursion(px, py, boundary, return_grad=True)
    assert scores[0] == float("-inf") and scores[1] == float("-inf") and torch.isfinite(scores[2])
    assert (px_grad[:2] == 0).all() and (py_grad[:2] == 0).all()
    scores[2:].sum().backward()
    assert torch.isfinite(px.grad).all()


def test_empty_sequence_is_a_row_of_blanks(backend: str) -> None:
    px, py = _lattice(regular=True)
    boundary = torch.tensor([[0, 0, 0, 6], [2, 1, 2, 5], [0, 0, 4, 6]])
    scores = mutual_information_recursion(px, py, boundary)
    torch.testing.assert_close(scores[0], py[0, 0, :6].sum())
    torch.testing.assert_close(scores[1], py[1, 2, 1:5].sum())


@pytest.mark.parametrize("bad", ["nan_px", "posinf_py"])
def test_nan_input_is_an_error(backend: str, bad: str) -> None:
    px, py = _lattice(regular=True)
    if bad == "nan_px":
        px[0, 1, 2] = float("nan")
    else:
        py[2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        mutual_information_recursion(px, py)


@pytest.mark.parametrize(
    "boundary, match",
    [
        ([[0, 0, 5, 6]] * 3, "outside the lattice"),
        ([[0, 0, 4, 7]] * 3, "outside the lattice"),
        ([[3, 0, 2, 6]] * 3, "outside the lattice"),
        ([[0, 0, 4, 6]] * 2, "must be \\(B, 4\\)"),
    ],
)
def test_bad_boundary_is_an_error(boundary: list, match: str) -> None:
    px, py = _lattice(regular=True)
    with pytest.raises(ValueError, match=match):
        mutual_information_recursion(px, py, torch.tensor(boundary))


def test_boundary_must_be_int64() -> None:
    px, py = _lattice(regular=True)
    with pytest.raises(TypeError, match="int64"):
        mutual_information_recursion(px, py, torch.tensor([[0, 0, 4, 6]] * 3, dtype=torch.int32))


def test_shapes_must_form_a_lattice() -> None:
    px, py = _lattice(regular=True)
    with pytest.raises(ValueError, match="do not form a lattice"):
        mutual_information_recursion(px[:, :, :-2], py)


def test_tiny_occupations_are_flushed_to_zero(backend: str) -> None:
    """Far-off-path arcs would get occupations in the denormal range (slow in later matmuls): they are 0."""
    g = torch.Generator().manual_seed(2)
    px = 20 * torch.randn(2, 30, 61, generator=g)
    py = 20 * torch.randn(2, 31, 60, generator=g)
    _, (px_grad, py_grad) = mutual_information_recursion(px, py, return_grad=True)
    threshold = flush_threshold(torch.float32)
    for occupation in (px_grad, py_grad):
        assert not ((occupation > 0) & (occupation < threshold)).any()
        assert (occupation == 0).any()
    torch.testing.assert_close(py_grad.sum(dim=(1, 2)), torch.full((2,), 60.0))
