"""Helpers of other test directories, loaded by file: the decoding tests' fake transducer and reference
search, and the target tests' fixtures (their tiny corpus with features and random teachers)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_TESTS = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


fake_model = _load("lm_tests_fake_model", _TESTS / "decode" / "fake_model.py")
reference = _load("lm_tests_reference", _TESTS / "decode" / "reference.py")
targets_conftest = _load("lm_tests_targets_conftest", _TESTS / "targets" / "conftest.py")
