"""The overfit diagnostic runs on the tiny corpus, for the transducer and for CTC alone."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize("extra", [[], ["--ctc-only", "model.encoder.block_norm=true"]])
def test_overfit_reports_wer_every_eval(tiny, tmp_path, extra):
    config = tiny.config_file(tmp_path)
    command = [
        sys.executable, "-m", "kd.bin.overfit", "--config", str(config), "--cuts", str(tiny.train_cuts),
        "--bpe-model", str(tiny.bpe_model), "--num-cuts", "3", "--steps", "2", "--eval-every", "1",
        "--batch-size", "2", "--threads", "1", *extra,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    lines = re.findall(r"update (\d+): WER ([\d.]+)% on the 3 training cuts", out)
    assert [int(n) for n, _ in lines] == [0, 1, 2]
    assert all(float(w) >= 0 for _, w in lines)
