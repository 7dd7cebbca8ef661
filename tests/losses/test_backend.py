from __future__ import annotations

import importlib
import logging
import sys
import types
from collections.abc import Iterator

import pytest
import torch

from kd import losses
from kd.losses import backend, mutual_information

EXTERNAL = ["k2", "fast_rnnt"]


@pytest.fixture
def fresh_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Lets a test re-run the start-up choice; restores the previous backend afterwards."""
    previous = backend.rnnt_backend()
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    monkeypatch.setattr(backend, "_active", None)
    yield monkeypatch
    monkeypatch.undo()
    backend.set_rnnt_backend(previous)


def test_environment_variable_forces_the_builtin_code(fresh_choice: pytest.MonkeyPatch) -> None:
    fresh_choice.setenv(backend.ENV_VAR, "builtin")
    assert backend.rnnt_backend() == "builtin"


def test_preference_order_k2_then_fast_rnnt_then_builtin(fresh_choice: pytest.MonkeyPatch) -> None:
    fresh_choice.setitem(sys.modules, "k2", None)  # makes `import k2` fail
    expected = "fast_rnnt" if backend.is_available("fast_rnnt") else "builtin"
    assert backend.rnnt_backend() == expected
    fresh_choice.setattr(backend, "_active", None)
    fresh_choice.setitem(sys.modules, "fast_rnnt", None)
    assert backend.available_backends() == ["builtin"]
    assert backend.rnnt_backend() == "builtin"


def test_forcing_a_backend_that_does_not_import_is_an_error(fresh_choice: pytest.MonkeyPatch) -> None:
    fresh_choice.setitem(sys.modules, "k2", None)
    fresh_choice.setenv(backend.ENV_VAR, "k2")
    with pytest.raises(ImportError, match="KD_RNNT_BACKEND=k2 but k2 does not import"):
        backend.rnnt_backend()
    with pytest.raises(ImportError, match="does not import"):
        backend.set_rnnt_backend("k2")


def test_unknown_backend_name_is_an_error(fresh_choice: pytest.MonkeyPatch) -> None:
    fresh_choice.setenv(backend.ENV_VAR, "warp")
    with pytest.raises(
        ValueError, match="unknown RNN-T backend 'warp'; choose one of k2, fast_rnnt, builtin"
    ):
        backend.rnnt_backend()


def test_the_choice_is_logged_once(
    fresh_choice: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_choice.setattr(backend, "_logged", set())
    fresh_choice.setenv(backend.ENV_VAR, "builtin")
    with caplog.at_level(logging.INFO, logger=backend.__name__):
        backend.rnnt_backend()
        losses.mutual_information_recursion(torch.zeros(1, 2, 4), torch.zeros(1, 3, 3))
    assert [r.getMessage() for r in caplog.records] == [
        "RNN-T losses: using the builtin backend for the mutual-information recursion"
    ]


def _module(name: str):
    if not backend.is_available(name):
        pytest.skip(f"{name} does not import here")
    return importlib.import_module(name)


@pytest.mark.parametrize("name", EXTERNAL)
@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_builtin_equals_the_external_package_called_directly(name: str, rnnt_type: str) -> None:
    """The whole icefall pipeline through the external package's own functions vs ours on builtin.
    (delay_penalty 0.25 is exact in float32, where k2 computes the penalty.)"""
    ext = _module(name)
    g = torch.Generator().manual_seed(3)
    Bn, Tn, Un, Vn = 3, 12, 5, 7
    lm = torch.randn(Bn, Un + 1, Vn, generator=g, dtype=torch.float64)
    am = torch.randn(Bn, Tn, Vn, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, Vn, (Bn, Un), generator=g)
    boundary = torch.tensor([[0, 0, 5, 12], [0, 0, 3, 9], [0, 0, 1, 4]])
    common = dict(symbols=symbols, termination_symbol=0, boundary=boundary, rnnt_type=rnnt_type)

    def pipeline(lib, smoothed: bool):
        if smoothed:
            simple = lib.rnnt_loss_smoothed(
                lm=lm,
                am=am,
                lm_only_scale=0.25,
                am_only_scale=0.1,
                reduction="none",
                return_grad=True,
                **common,
            )
        else:
            simple = lib.rnnt_loss_simple(
                lm=lm, am=am, delay_penalty=0.25, reduction="none", return_grad=True, **common
            )
        loss, (px_grad, py_grad) = simple
        ranges = lib.get_rnnt_prune_ranges(px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=3)
        am_pruned, lm_pruned = lib.do_rnnt_pruning(am=am, lm=lm, ranges=ranges)
        logits = (am_pruned + lm_pruned).requires_grad_()
        pruned = lib.rnnt_loss_pruned(logits=logits, ranges=ranges, reduction="none", **common)
        (grad,) = torch.autograd.grad(pruned.sum(), logits)
        full = lib.rnnt_loss(logits=am.unsqueeze(2) + lm.unsqueeze(1), reduction="none", **common)
        return loss, px_grad, py_grad, ranges, pruned.detach(), grad, full

    previous = backend.rnnt_backend()
    backend.set_rnnt_backend("builtin")
    try:
        for smoothed in (False, True):
            ours, theirs = pipeline(losses, smoothed), pipeline(ext, smoothed)
            for mine, ref in zip(ours, theirs):
                torch.testing.assert_close(mine, ref, rtol=1e-10, atol=1e-10)
    finally:
        backend.set_rnnt_backend(previous)


def test_cpu_only_builds_are_not_given_cuda_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("fast_rnnt")
    fake.mutual_information_recursion = lambda *args, **kwargs: None
    fake.with_cuda = lambda: False  # fast_rnnt's form; k2 has a bool
    monkeypatch.setitem(sys.modules, "fast_rnnt", fake)
    cuda = torch.device("cuda")
    assert backend.supports_device("fast_rnnt", torch.device("cpu"))
    assert not backend.supports_device("fast_rnnt", cuda)
    assert mutual_information._kernel_for("fast_rnnt", cuda) is mutual_information.builtin_kernel
    fake.with_cuda = True
    assert backend.supports_device("fast_rnnt", cuda)
    assert mutual_information._kernel_for("fast_rnnt", cuda) is not mutual_information.builtin_kernel
