from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from kd.losses import backend as rnnt_backend

REFERENCE_DIR = Path(__file__).parent / "k2_reference"


@pytest.fixture(params=rnnt_backend.BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once per backend; backends that do not import here are skipped."""
    name = request.param
    if not rnnt_backend.is_available(name):
        pytest.skip(f"{name} does not import here")
    previous = rnnt_backend.rnnt_backend()
    rnnt_backend.set_rnnt_backend(name)
    yield name
    rnnt_backend.set_rnnt_backend(previous)


def load_reference(name: str) -> dict:
    return torch.load(REFERENCE_DIR / name, weights_only=True)


def reference_files(prefix: str) -> list[str]:
    names = sorted(p.name for p in REFERENCE_DIR.glob(f"{prefix}*.pt"))
    assert names, f"no k2 reference files {prefix}*.pt in {REFERENCE_DIR}"
    return names


def tolerance(d: dict) -> dict:
    """k2 wrote the f32 files in float32: compare those loosely, the f64 ones tightly."""
    return {"rtol": 1e-9, "atol": 1e-9} if d["meta_dtype"] == "f64" else {"rtol": 2e-4, "atol": 2e-4}
