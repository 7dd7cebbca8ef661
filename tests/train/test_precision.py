"""Which hardware the trainer's bfloat16 autocast (train.amp) turns on for."""

from __future__ import annotations

import pytest
import torch

from kd.train import precision


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu avx2 avx512f avx512bw", False),
        ("fpu avx512f avx512_bf16 avx512_vnni", True),
        ("fpu amx_bf16", True),
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert precision.cpu_has_native_bfloat16(cpuinfo) is native


def test_no_cpuinfo_means_no_native_bfloat16(tmp_path):
    assert not precision.cpu_has_native_bfloat16(tmp_path / "missing")


def test_the_cpu_autocasts_only_with_native_bfloat16_and_amp_on(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    assert precision.uses_bfloat16(cpu, amp=True)
    assert not precision.uses_bfloat16(cpu, amp=False)
    with precision.autocast(cpu, amp=True):
        assert torch.is_autocast_enabled("cpu")
        assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: False)
    assert not precision.uses_bfloat16(cpu, amp=True)
    with precision.autocast(cpu, amp=True):
        assert not torch.is_autocast_enabled("cpu")
