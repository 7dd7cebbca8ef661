"""Mixed precision for training: bfloat16 autocast where the hardware computes bfloat16 natively."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

# CPU flags (Linux /proc/cpuinfo) of native bfloat16 dot products; without them oneDNN emulates bfloat16
# and autocast would slow training down.
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 dot products natively (AVX512-BF16 or AMX)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def uses_bfloat16(device: torch.device, amp: bool) -> bool:
    """Whether training with ``train.amp`` set to ``amp`` autocasts to bfloat16 on ``device``."""
    if not amp:
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bfloat16()


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """The forward pass's autocast context: bfloat16 where :func:`uses_bfloat16`, else none. The models
    keep their losses (lattice recursions, CTC) in float32 inside it."""
    if uses_bfloat16(device, amp):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
