import pytest
import torch

from kd.train.checkpoint import (
    CheckpointError,
    average_state_dicts,
    latest_checkpoint,
    load_checkpoint,
    prune_step_checkpoints,
    save_checkpoint,
    select_for_averaging,
)


def _save(path, step, weight):
    save_checkpoint(
        path, {"global_step": step, "model": {"w": torch.full((2,), weight), "n": torch.tensor(step)}}
    )


def test_latest_and_prune(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    _save(tmp_path / "epoch-1.pt", 10, 1.0)
    _save(tmp_path / "checkpoint-5.pt", 5, 0.0)
    _save(tmp_path / "checkpoint-15.pt", 15, 2.0)
    _save(tmp_path / "checkpoint-20.pt", 20, 2.0)
    assert latest_checkpoint(tmp_path).name == "checkpoint-20.pt"
    prune_step_checkpoints(tmp_path, keep_last_k=1)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint-20.pt", "epoch-1.pt"]
    assert not list(tmp_path.glob("*.tmp"))


def test_average(tmp_path):
    for e, w in [(1, 1.0), (2, 2.0), (3, 6.0)]:
        _save(tmp_path / f"epoch-{e}.pt", e, w)
    paths = select_for_averaging(tmp_path, epoch=None, avg=2)
    assert [p.name for p in paths] == ["epoch-2.pt", "epoch-3.pt"]
    avg = average_state_dicts(paths)
    assert torch.equal(avg["w"], torch.full((2,), 4.0))
    assert avg["n"].item() == 3  # integer buffers come from the last checkpoint
    with pytest.raises(CheckpointError, match="missing \\[0\\].*average fewer"):
        select_for_averaging(tmp_path, epoch=3, avg=4)


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "epoch-9.pt")
    bad = tmp_path / "epoch-1.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*epoch-1.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="epoch-1.pt"):
        latest_checkpoint(tmp_path)
