"""Which implementation runs the mutual-information recursion: k2, fast_rnnt or the built-in PyTorch code.

Only the recursion (the one sequential, compiled part) is delegated; everything around it (the lattice
log-probs, prune ranges, input checks) is this package's own code, so every backend gives the same
numbers and the same errors. Order of preference: k2, then fast_rnnt, then builtin. The environment
variable KD_RNNT_BACKEND=k2|fast_rnnt|builtin forces one (an error if it does not import);
set_rnnt_backend() does the same from code. The choice is logged once per process.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

import torch

BACKENDS = ("k2", "fast_rnnt", "builtin")
ENV_VAR = "KD_RNNT_BACKEND"

logger = logging.getLogger(__name__)

_active: str | None = None
_logged: set[str] = set()


def rnnt_backend() -> str:
    """The name of the backend in use ("k2", "fast_rnnt" or "builtin"), choosing it on first use."""
    global _active
    if _active is None:
        _active = _choose()
    if _active not in _logged:
        _logged.add(_active)
        logger.info("RNN-T losses: using the %s backend for the mutual-information recursion", _active)
    return _active


def set_rnnt_backend(name: str | None) -> str:
    """Forces a backend (None: choose again as at start-up, honouring KD_RNNT_BACKEND); returns its name."""
    global _active
    if name is None:
        _active = None
    else:
        _check_name(name, "set_rnnt_backend")
        if name != "builtin" and not is_available(name):
            raise ImportError(f"set_rnnt_backend({name!r}): {name} does not import here")
        _active = name
    return rnnt_backend()


def available_backends() -> list[str]:
    """The backends that import here, in order of preference (builtin is always last)."""
    return [name for name in BACKENDS if is_available(name)]


def is_available(name: str) -> bool:
    _check_name(name, "is_available")
    if name == "builtin":
        return True
    try:
        backend_module(name)
    except Exception:  # a broken build raises all sorts (OSError for a bad .so, AttributeError, ...)
        return False
    return True


def backend_module(name: str) -> ModuleType:
    """The imported k2 or fast_rnnt module."""
    module = importlib.import_module(name)
    if not callable(getattr(module, "mutual_information_recursion", None)):
        raise ImportError(f"{name} imports but has no mutual_information_recursion")
    return module


def supports_device(name: str, device: torch.device) -> bool:
    """Whether the backend runs on `device` (a CPU-only k2/fast_rnnt build cannot take CUDA tensors)."""
    if name == "builtin" or device.type == "cpu":
        return True
    flag = getattr(backend_module(name), "with_cuda", False)
    return bool(flag() if callable(flag) else flag) and device.type == "cuda"


def _choose() -> str:
    forced = os.environ.get(ENV_VAR, "").strip()
    if forced:
        _check_name(forced, ENV_VAR)
        if not is_available(forced):
            raise ImportError(
                f"{ENV_VAR}={forced} but {forced} does not import; unset {ENV_VAR}, set it to builtin, or "
                "install it (fast_rnnt: tools/build_fast_rnnt.sh)"
            )
        return forced
    return available_backends()[0]


def _check_name(name: str, where: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"{where}: unknown RNN-T backend {name!r}; choose one of {', '.join(BACKENDS)}")
