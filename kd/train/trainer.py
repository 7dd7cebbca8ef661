"""The one training loop, for teachers, students and (later) every KD objective.

Resumes exactly: the newest checkpoint in the experiment directory (end of epoch or mid-epoch) restores the
model, optimiser, schedule, sampler position and RNG states, so a killed run continues where it stopped and
never repeats a finished epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse import CutSet
from lhotse.cut import Cut
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from kd.config import ConfigError, from_dict, save_yaml, to_dict
from kd.data.datamodule import AsrDataModule
from kd.data.tokenizer import Tokenizer
from kd.models import ModelConfig, count_parameters
from kd.models.colearn import colearn_part
from kd.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_step_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from kd.train.config import TrainConfig
from kd.train.distill import build_objective, build_training_model, training_cuts
from kd.train.distributed import DistInfo, all_reduce_sum, cleanup_distributed, setup_distributed
from kd.train.objective import BatchLoss, Objective, TransducerObjective
from kd.train.optim import build_optimizer
from kd.train.precision import autocast, uses_bfloat16
from kd.train.scaled_adam import ScaledAdam
from kd.train.sparsity import Pruner

ObjectiveFactory = Callable[[TrainConfig, Tokenizer], Objective]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available; use train.device=cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seeds every RNG the loop draws from (SpecAugment uses Python's and NumPy's, dropout torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def has_transcript(cut: Cut) -> bool:
    """Whether the cut's first supervision has a non-empty transcript (a named function, not a lambda: lhotse
    warns that a lambda in a lazy filter cannot be pickled into forked dataloader workers)."""
    return bool(cut.supervisions) and bool(cut.supervisions[0].text)


def load_labelled_cuts(path: str, what: str) -> CutSet:
    """Reads a CutSet and keeps the cuts that carry a transcript, saying how many were left out."""
    if not path:
        raise ConfigError(f"paths.{what} is empty: give the CutSet to use (e.g. data/synth/fbank/...)")
    if not Path(path).is_file():
        raise ConfigError(f"paths.{what}: {path} not found; run the data stages of run.sh first")
    cuts = CutSet.from_file(path)
    labelled = cuts.filter(has_transcript).to_eager()
    dropped = len(cuts) - len(labelled)
    if dropped:
        logging.warning(
            "%s: %d of %d cuts have no transcript and are not used here", path, dropped, len(cuts)
        )
    if len(labelled) == 0:
        raise ConfigError(f"paths.{what}: {path} has no labelled cuts")
    return labelled


class Trainer:
    """Trains ``config.model`` with ``objective`` into ``exp_dir``."""

    def __init__(
        self,
        config: TrainConfig,
        exp_dir: Path,
        objective_factory: ObjectiveFactory | None = None,
    ) -> None:
        self.config = config
        self.exp_dir = Path(exp_dir)
        self.dist: DistInfo = setup_distributed(resolve_device(config.train.device))
        self.device = resolve_device(config.train.device, self.dist.local_rank)
        if self.device.type == "cpu" and config.train.num_threads > 0:
            torch.set_num_threads(config.train.num_threads)
        seed_everything(config.train.seed + self.dist.rank)

        self.tokenizer = Tokenizer(config.paths.bpe_model)
        # Co-learning (kd.mode: colearn) trains teacher and student as one module, so one optimiser,
        # checkpoint and resume cover both.
        self.model = build_training_model(config, self.tokenizer.vocab_size).to(self.device)
        self.optimizer, self.scheduler = build_optimizer(self.model, config.optim)
        self.pruner = Pruner(self.model, config.sparsity) if config.sparsity.enabled else None
        targets = None
        if objective_factory is None:
            self.objective, targets = build_objective(config, self.tokenizer, self.device)
        else:
            self.objective = objective_factory(config, self.tokenizer)
        # Validation scores the student's own transducer loss (a co-learned teacher's is not validated), on
        # cuts that carry no teacher targets.
        self.valid_objective = TransducerObjective(config.loss, self.tokenizer)
        self.data = AsrDataModule(config.data, targets=targets)
        self.valid_data = AsrDataModule(config.data)
        self.epoch = 1  # the epoch being trained (1-based)
        self.global_step = 0
        self.sampler_state: dict[str, Any] | None = None
        self.resume_rng: dict[str, Any] | None = None
        self.skipped_batches = 0
        self.writer: SummaryWriter | None = None

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    # ---- experiment directory -------------------------------------------------------------------------
    def _prepare_exp_dir(self) -> None:
        if not self.is_main:
            return
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.exp_dir / "config.yaml"
        if cfg_path.is_file():
            import yaml

            with open(cfg_path) as f:
                old = yaml.safe_load(f)
            # Compared as dataclasses, so a key added to ModelConfig since (at its default) is no change.
            if from_dict(ModelConfig, old.get("model") or {}, f"{cfg_path}: model") != self.config.model:
                raise ConfigError(
                    f"{cfg_path} holds a different model config than the one given; use another --exp-dir "
                    "or remove the old experiment"
                )
        save_yaml(self.config, cfg_path)
        self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"))
        counts = count_parameters(self.model)
        logging.info("model parameters: %s", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        amp = uses_bfloat16(self.device, self.config.train.amp)
        logging.info("precision: %s", "bfloat16 autocast (train.amp)" if amp else "float32")

    def _resume(self) -> None:
        path = latest_checkpoint(self.exp_dir)
        if path is None:
            if self.config.paths.init_from:
                self._init_from(Path(self.config.paths.init_from))
            return
        state = load_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ConfigError(
                f"{path} does not fit the model built from the config with the tokenizer "
                f"{self.config.paths.bpe_model} (vocabulary {self.tokenizer.vocab_size}); was it trained "
                f"with another BPE model? Resume with that one, or train into another --exp-dir (run.sh: "
                f"--exp-dir). ({str(e).splitlines()[0]})"
            ) from e
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.pruner is not None and state.get("pruner") is not None:
            self.pruner.load_state_dict(state["pruner"])
        self.global_step = state["global_step"]
        self.skipped_batches = state.get("skipped_batches", 0)
        if state["epoch_finished"]:
            self.epoch = state["epoch"] + 1
            set_rng_state(state["rng"])
        else:
            # Mid-epoch the loader's iterator already existed when the state was saved: restore the RNG
            # after re-creating it (see _train_epoch).
            self.epoch = state["epoch"]
            self.sampler_state = state["sampler"]
            self.resume_rng = state["rng"]
        logging.info("resumed from %s: epoch %d, global batch %d", path, self.epoch, self.global_step)

    def _init_from(self, source: Path) -> None:
        """Starts a fresh run from the model weights of a checkpoint, or of an experiment's newest one."""
        path = latest_checkpoint(source) if source.is_dir() else source
        if path is None:
            raise ConfigError(f"paths.init_from: no checkpoints in {source}; train that model first")
        try:
            self.model.load_state_dict(load_checkpoint(path)["model"])
        except RuntimeError as e:
            raise ConfigError(
                f"paths.init_from: {path} does not fit the configured model (the model config must be the "
                f"one that checkpoint was trained with): {str(e).splitlines()[0]}"
            ) from e
        logging.info("initialised the model from %s", path)

    def _state(self, sampler: Any, epoch_finished: bool) -> dict[str, Any]:
        return {
            "model": self._bare_model().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": None if epoch_finished else sampler.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "epoch_finished": epoch_finished,
            "global_step": self.global_step,
            "skipped_batches": self.skipped_batches,
            "pruner": None if self.pruner is None else self.pruner.state_dict(),
            "config": to_dict(self.config),
            "bpe_model": self.config.paths.bpe_model,
        }

    def _bare_model(self) -> torch.nn.Module:
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    # ---- the loop --------------------------------------------------------------------------------------
    def fit(self) -> None:
        cfg = self.config.train
        self._prepare_exp_dir()
        self._resume()
        if self.pruner is not None:
            self.pruner.step(self.global_step)
        if self.dist.world_size > 1:
            self.model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        train_cuts = training_cuts(self.config, load_labelled_cuts)
        valid_cuts = load_labelled_cuts(self.config.paths.valid_cuts, "valid_cuts")
        try:
            while self.epoch <= cfg.num_epochs:
                record = self._train_epoch(train_cuts)
                if self.epoch % cfg.valid_every_n_epochs == 0 or self.epoch == cfg.num_epochs:
                    record["valid_loss"] = self._validate(valid_cuts)
                self._record_epoch(record)
                self.epoch += 1
        finally:
            if self.writer is not None:
                self.writer.close()
            cleanup_distributed()
        if self.skipped_batches:
            logging.warning("%d batches were skipped for a non-finite loss", self.skipped_batches)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.config.train.amp)

    def _loss_is_finite(self, loss: BatchLoss) -> bool:
        finite = torch.tensor([float(math.isfinite(loss.total.item()))], device=self.device)
        # Every rank must skip the same batches, or DDP's gradient all-reduce would hang.
        return bool(all_reduce_sum(finite).item() == self.dist.world_size)

    def _record_epoch(self, record: dict[str, Any]) -> None:
        """Appends the finished epoch's summary to ``epochs.jsonl`` (the result tables read training times
        from it). An epoch redone after a kill gets a second line; readers keep the last one."""
        if not self.is_main:
            return
        with open(self.exp_dir / "epochs.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": self.epoch, **record}) + "\n")

    def _train_epoch(self, cuts: CutSet) -> dict[str, Any]:
        """One pass over the training cuts; returns its wall seconds, frames and per-frame loss terms (a
        resumed epoch counts only the part run since the resume)."""
        cfg = self.config.train
        self.scheduler.set_epoch(self.epoch - 1)
        self.model.train()
        loader = self.data.train_dataloader(
            cuts,
            seed=cfg.seed + self.epoch,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            sampler_state_dict=self.sampler_state,
        )
        sampler = loader.sampler
        self.sampler_state = None
        totals: dict[str, float] = {}
        frames = 0
        start = time.time()
        batches = iter(loader)
        if self.resume_rng is not None:
            # Creating the loader's iterator draws its base seed from the torch RNG, so the saved RNG
            # state is restored only now, or a resumed run would diverge from an uninterrupted one.
            set_rng_state(self.resume_rng)
            self.resume_rng = None
        bar = tqdm(batches, desc=f"epoch {self.epoch}", disable=not self.is_main, dynamic_ncols=True)
        for batch_idx, batch in enumerate(bar):
            if cfg.max_batches_per_epoch and batch_idx >= cfg.max_batches_per_epoch:
                break
            with self._autocast():
                loss = self.objective(self.model, batch, self.global_step)
            if not self._loss_is_finite(loss):
                self.skipped_batches += 1
                logging.warning(
                    "epoch %d batch %d: non-finite loss %s, batch skipped (%d so far); cuts %s",
                    self.epoch,
                    batch_idx,
                    loss.terms,
                    self.skipped_batches,
                    batch["cut_ids"][:4],
                )
                self.optimizer.zero_grad(set_to_none=True)
                continue
            (loss.total / max(loss.num_frames, 1)).backward()
            step_scalars = self._optimizer_step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.global_step += 1
            if self.pruner is not None:
                self.pruner.step(self.global_step)

            frames += loss.num_frames
            for k, v in loss.terms.items():
                totals[k] = totals.get(k, 0.0) + v
            if self.is_main and self.global_step % cfg.log_interval == 0:
                per_frame = {k: v / loss.num_frames for k, v in loss.terms.items()}
                bar.set_postfix({k: f"{v:.3f}" for k, v in per_frame.items()})
                self._log_scalars("train", per_frame, **step_scalars)
            if cfg.save_every_n and self.global_step % cfg.save_every_n == 0 and self.is_main:
                save_checkpoint(
                    self.exp_dir / f"checkpoint-{self.global_step}.pt", self._state(sampler, False)
                )
                prune_step_checkpoints(self.exp_dir, cfg.keep_last_k)
        elapsed = time.time() - start
        if self.is_main:
            summary = {k: v / max(frames, 1) for k, v in totals.items()}
            logging.info(
                "epoch %d: %s per frame, %d frames in %.1f s (%.0f frames/s)",
                self.epoch,
                {k: round(v, 4) for k, v in summary.items()},
                frames,
                elapsed,
                frames / max(elapsed, 1e-9),
            )
            self._log_scalars("train_epoch", summary, frames_per_second=frames / max(elapsed, 1e-9))
            save_checkpoint(self.exp_dir / f"epoch-{self.epoch}.pt", self._state(sampler, True))
        return {
            "seconds": round(elapsed, 3),
            "frames": frames,
            "train": {k: v / max(frames, 1) for k, v in totals.items()},
        }

    def _optimizer_step(self) -> dict[str, float]:
        """Clips the gradients and steps; returns the gradient norm (and ScaledAdam's clip count) to log.

        AdamW's gradients are clipped to the global norm ``optim.grad_clip``; ScaledAdam clips in its own
        step against its recent median and reports the norm it measured (each tensor's scaled by its RMS).
        """
        if isinstance(self.optimizer, ScaledAdam):
            self.optimizer.step()
            return {"grad_norm": self.optimizer.last_grad_norm, "clipped_steps": self.optimizer.clipped_steps}
        clip = self.config.optim.grad_clip
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        self.optimizer.step()
        return {"grad_norm": float(norm)}

    @torch.no_grad()
    def _validate(self, cuts: CutSet) -> float:
        # Validation must not advance the training RNG, or a run resumed from an end-of-epoch checkpoint
        # (saved before validation) would draw different dropout masks than an uninterrupted one.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            return self._validate_loss(cuts)

    def _validate_loss(self, cuts: CutSet) -> float:
        """The validation loss per frame (summed over ranks)."""
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        student = colearn_part(self._bare_model(), "student")
        for batch in self.valid_data.eval_dataloader(cuts):
            with self._autocast():
                loss = self.valid_objective(student, batch, self.global_step)
            if math.isfinite(loss.total.item()):
                totals += torch.tensor([loss.total.item(), loss.num_frames], device=self.device)
        self.model.train()
        value = (totals[0] / totals[1].clamp(min=1)).item()
        if self.is_main:
            logging.info("epoch %d: validation loss %.4f per frame", self.epoch, value)
            self._log_scalars("valid", {"loss": value})
        return value

    def _log_scalars(self, tag: str, values: dict[str, float], **extra: float) -> None:
        if self.writer is None:
            return
        for k, v in {**values, **extra}.items():
            self.writer.add_scalar(f"{tag}/{k}", v, self.global_step)
        self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.global_step)
