"""Fixtures of the export tests: the training tests' tiny corpus, and a causal tiny model trained on it for a
few steps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from .tiny_models import CHUNK_SIZE, LEFT_CONTEXT

# The training tests' tiny corpus (features + BPE), built once per session.
_spec = importlib.util.spec_from_file_location(
    "train_conftest", Path(__file__).resolve().parents[1] / "train" / "conftest.py"
)
_train_conftest = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _train_conftest  # dataclasses look their module up while it executes
_spec.loader.exec_module(_train_conftest)
tiny = _train_conftest.tiny
TinySetup = _train_conftest.TinySetup


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only add overhead on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_exp(tiny: TinySetup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment directory with a causal (chunked) tiny model trained for two short epochs."""
    from kd.config import load_yaml
    from kd.train.config import TrainConfig
    from kd.train.trainer import Trainer

    root = tmp_path_factory.mktemp("trained")
    encoder = dict(
        _train_conftest.TINY_CONFIG["model"]["encoder"],
        causal=True,
        chunk_size=CHUNK_SIZE,
        left_context_frames=LEFT_CONTEXT,
    )
    config_file = tiny.config_file(root, model={"encoder": encoder})
    Trainer(load_yaml(TrainConfig, config_file), root / "exp").fit()
    return root / "exp"
