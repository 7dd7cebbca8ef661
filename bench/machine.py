"""What the benchmarks print about the machine, and the peak-memory probe they share (Linux /proc)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model and how many CPUs this process sees."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} CPUs visible)"


def reset_peak_rss() -> int:
    """Resets VmHWM to the current RSS; returns the RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_kib("VmRSS")


def status_kib(key: str) -> int:
    """A ``/proc/self/status`` field in KiB, e.g. VmHWM (peak resident memory)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status (this benchmark needs Linux)")
