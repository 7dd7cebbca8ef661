"""Checkpoints: atomic writes, the resume point of an experiment, and averaging.

An experiment directory holds ``epoch-N.pt`` (end of epoch N, 1-based) and ``checkpoint-S.pt`` (after
global batch S, written every ``save_every_n`` batches). Each holds everything needed to resume exactly:
model, optimiser, scheduler, sampler state, RNG states, counters and the config.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")
_STEP_RE = re.compile(r"^checkpoint-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Writes ``state`` to ``path`` via a temporary file and rename, so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint`, with an error that names the file.

    ``mmap=True`` maps the tensors instead of reading them, for when only the counters are needed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=False)
    except Exception as e:  # torch raises several unrelated types for a truncated or foreign file
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(e).__name__}: {e}); "
            "delete it to resume from an earlier one"
        ) from e


def epoch_checkpoints(exp_dir: Path) -> dict[int, Path]:
    """``{epoch: path}`` of the end-of-epoch checkpoints in ``exp_dir``."""
    found = {}
    for p in Path(exp_dir).glob("epoch-*.pt"):
        m = _EPOCH_RE.match(p.name)
        if m:
            found[int(m.group(1))] = p
    return found


def step_checkpoints(exp_dir: Path) -> dict[int, Path]:
    """``{global_batch: path}`` of the mid-epoch checkpoints in ``exp_dir``."""
    found = {}
    for p in Path(exp_dir).glob("checkpoint-*.pt"):
        m = _STEP_RE.match(p.name)
        if m:
            found[int(m.group(1))] = p
    return found


def latest_checkpoint(exp_dir: Path) -> Path | None:
    """The checkpoint with the largest global batch count, epoch or mid-epoch, or None."""
    best: tuple[int, Path] | None = None
    for p in [*epoch_checkpoints(exp_dir).values(), *step_checkpoints(exp_dir).values()]:
        step = int(load_checkpoint(p, mmap=True)["global_step"])
        if best is None or step > best[0]:
            best = (step, p)
    return best[1] if best else None


def prune_step_checkpoints(exp_dir: Path, keep_last_k: int) -> None:
    """Removes all but the newest ``keep_last_k`` mid-epoch checkpoints."""
    steps = sorted(step_checkpoints(exp_dir).items())
    for _, p in steps[: max(0, len(steps) - keep_last_k)]:
        p.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def average_state_dicts(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the models in ``paths`` (icefall's ``--avg``).

    Floating-point tensors are averaged in float64 and cast back; integer buffers (e.g. counters) are
    taken from the last checkpoint.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for p in paths:
        model = load_checkpoint(p)["model"]
        for k, v in model.items():
            if v.is_floating_point():
                total[k] = total[k] + v.double() if k in total else v.double().clone()
        last = model
    out = {}
    for k, v in last.items():
        out[k] = (total[k] / len(paths)).to(v.dtype) if k in total else v
    logging.info("averaged %d checkpoints: %s", len(paths), ", ".join(p.name for p in paths))
    return out


def select_for_averaging(exp_dir: Path, epoch: int | None, avg: int) -> list[Path]:
    """The end-of-epoch checkpoints ``epoch-avg+1 .. epoch`` (``epoch`` None = the last one)."""
    found = epoch_checkpoints(exp_dir)
    if not found:
        raise CheckpointError(f"no epoch-N.pt checkpoints in {exp_dir}; train first")
    epoch = max(found) if epoch is None else epoch
    wanted = list(range(epoch - avg + 1, epoch + 1))
    missing = [e for e in wanted if e not in found]
    if missing or avg < 1:
        raise CheckpointError(
            f"--epoch {epoch} --avg {avg} needs epochs {wanted} in {exp_dir}; missing {missing}, "
            f"available {sorted(found)}: average fewer (run.sh: --teacher-avg / --avg) or train more epochs"
        )
    return [found[e] for e in wanted]
