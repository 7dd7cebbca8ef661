"""The training loop end to end on a tiny corpus: checkpoints, exact resume after a kill, DDP, decoding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kd.config import ConfigError, load_yaml
from kd.train.checkpoint import load_checkpoint
from kd.train.config import TrainConfig
from kd.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_cli(config: Path, exp_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kd.bin.train",
        "--config",
        str(config),
        "--exp-dir",
        str(exp_dir),
        *overrides,
    ]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_train_writes_checkpoints_and_logs(tiny, tmp_path):
    exp = tmp_path / "exp"
    config = load_yaml(TrainConfig, tiny.config_file(tmp_path))
    Trainer(config, exp).fit()
    assert (exp / "config.yaml").is_file()
    assert {p.name for p in exp.glob("epoch-*.pt")} == {"epoch-1.pt", "epoch-2.pt"}
    assert len(list(exp.glob("checkpoint-*.pt"))) <= 2  # keep_last_k
    assert list((exp / "tensorboard").iterdir())
    state = load_checkpoint(exp / "epoch-2.pt")
    assert state["epoch"] == 2 and state["epoch_finished"] and state["global_step"] > 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    records = [json.loads(line) for line in (exp / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert r["seconds"] > 0 and r["frames"] > 0 and r["valid_loss"] > 0 and r["train"]["pruned"] > 0
    # A finished run restarted does nothing: no epoch is repeated.
    Trainer(config, exp).fit()
    assert load_checkpoint(exp / "epoch-2.pt")["global_step"] == state["global_step"]
    assert len((exp / "epochs.jsonl").read_text().splitlines()) == 2


def test_validation_every_n_epochs_and_after_the_last(tiny, tmp_path):
    exp = tmp_path / "exp"
    config = load_yaml(
        TrainConfig, tiny.config_file(tmp_path, train={"num_epochs": 3, "valid_every_n_epochs": 2})
    )
    Trainer(config, exp).fit()
    records = [json.loads(line) for line in (exp / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "valid_loss" in r] == [2, 3]
    with pytest.raises(ConfigError, match="valid_every_n_epochs=0 must be at least 1"):
        load_yaml(TrainConfig, tiny.config_file(tmp_path, train={"valid_every_n_epochs": 0}))


@pytest.mark.parametrize("optimizer", ["adamw", "scaled_adam"])
def test_resume_after_kill_equals_uninterrupted_run(tiny, tmp_path, optimizer):
    """SIGKILL mid-epoch, rerun the same command: the final weights equal those of a run never killed."""
    optim = {"name": optimizer} if optimizer == "adamw" else {"name": optimizer, "lr": 0.045}
    config = tiny.config_file(tmp_path, train={"save_every_n": 1, "keep_last_k": 3}, optim=optim)
    reference = tmp_path / "reference"
    subprocess.run(_train_cli(config, reference), env=_env(), check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cli(config, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not list(killed.glob("checkpoint-3.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "epoch-2.pt").exists(), "the run finished before it could be killed"

    out = subprocess.run(_train_cli(config, killed), env=_env(), check=True, capture_output=True, text=True)
    assert "resumed from" in out.stderr
    ref, res = _weights(reference / "epoch-2.pt"), _weights(killed / "epoch-2.pt")
    assert ref.keys() == res.keys()
    for k in ref:
        assert torch.equal(ref[k], res[k]), k


def test_changed_model_config_is_refused(tiny, tmp_path):
    exp = tmp_path / "exp"
    config = load_yaml(TrainConfig, tiny.config_file(tmp_path, train={"num_epochs": 1}))
    Trainer(config, exp).fit()
    config.model.joiner_dim = 48
    with pytest.raises(ConfigError, match="different model config"):
        Trainer(config, exp).fit()


def test_resume_with_another_vocabulary_is_refused(tiny, tmp_path):
    """run.sh --vocab-size changes the BPE model but not the experiment directory: resuming must say so."""
    from lhotse import CutSet

    from kd.data.tokenizer import train_bpe

    exp = tmp_path / "exp"
    config = load_yaml(TrainConfig, tiny.config_file(tmp_path, train={"num_epochs": 1}))
    Trainer(config, exp).fit()
    texts = [s.text for c in CutSet.from_file(tiny.train_cuts) for s in c.supervisions]
    config.paths.bpe_model = str(train_bpe(texts, vocab_size=34, output_dir=tmp_path / "lang34"))
    config.train.num_epochs = 2
    with pytest.raises(ConfigError, match=r"epoch-1\.pt does not fit .*vocabulary 34.*--exp-dir"):
        Trainer(config, exp).fit()


def test_ddp_two_gloo_processes(tiny, tmp_path):
    exp = tmp_path / "ddp"
    config = tiny.config_file(tmp_path, train={"num_epochs": 1})
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "kd.bin.train",
        "--config",
        str(config),
        "--exp-dir",
        str(exp),
    ]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    state = load_checkpoint(exp / "epoch-1.pt")
    assert state["global_step"] > 0
    # Each rank trained on half of the cuts: rank 1 logged its own file.
    assert list((exp / "log").glob("train-*-rank1.log"))


def test_decode_with_averaging(tiny, tmp_path):
    exp = tmp_path / "exp"
    config = load_yaml(TrainConfig, tiny.config_file(tmp_path))
    Trainer(config, exp).fit()
    cmd = [
        sys.executable,
        "-m",
        "kd.bin.decode",
        "--exp-dir",
        str(exp),
        "--avg",
        "2",
        "--methods",
        "greedy_search",
        "modified_beam_search",
        "--cuts",
        str(tiny.valid_cuts),
    ]
    subprocess.run(cmd, env=_env(), check=True, capture_output=True)
    stats = json.loads((exp / "wer-dev-greedy_search.json").read_text())
    assert stats["num_utts"] == 4 and stats["model"]["avg"] == 2 and stats["model"]["epoch"] == 2
    assert (exp / "errs-dev-modified_beam_search_beam_4.txt").is_file()
    assert (exp / "recogs-dev-greedy_search.txt").is_file()
    # An earlier checkpoint's decode goes beside it under its suffix and leaves the unsuffixed one alone.
    first = [*cmd[:5], "--epoch", "1", "--avg", "1", "--methods", "greedy_search"]
    first += ["--suffix", "epoch-1-avg-1"]
    subprocess.run([*first, "--cuts", str(tiny.valid_cuts)], env=_env(), check=True, capture_output=True)
    stats = json.loads((exp / "wer-dev-greedy_search_epoch-1-avg-1.json").read_text())
    assert stats["model"]["epoch"] == 1 and stats["model"]["avg"] == 1
    assert (exp / "recogs-dev-greedy_search_epoch-1-avg-1.txt").is_file()
    assert json.loads((exp / "wer-dev-greedy_search.json").read_text())["model"]["epoch"] == 2
    bad = subprocess.run(
        [*first[:-1], "../x", "--cuts", str(tiny.valid_cuts)], env=_env(), capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--suffix '../x'" in bad.stderr
