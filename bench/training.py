"""The training step that the benchmarks time: an experiment's model, objective and optimiser."""

from __future__ import annotations

from functools import partial
from pathlib import Path


class TrainingStep:
    """Forward, the transducer losses (simple + pruned, and CTC where the config has it), backward and an
    AdamW step of the model of ``exp_dir`` (its config.yaml with ``overrides`` applied, and its newest
    checkpoint; random weights if none or if not ``load_weights``), on the CPU with the trainer's precision
    (``train.amp``: bfloat16 autocast on a CPU with native bfloat16)."""

    def __init__(
        self,
        exp_dir: str | Path,
        seed: int = 0,
        overrides: list[str] | None = None,
        load_weights: bool = True,
    ) -> None:
        import torch

        from kd.config import load_yaml
        from kd.data.datamodule import AsrDataModule
        from kd.data.tokenizer import Tokenizer
        from kd.models import build_model
        from kd.train.checkpoint import latest_checkpoint, load_checkpoint
        from kd.train.config import TrainConfig
        from kd.train.objective import TransducerObjective
        from kd.train.optim import build_optimizer
        from kd.train.precision import autocast

        torch.manual_seed(seed)
        config = load_yaml(TrainConfig, Path(exp_dir) / "config.yaml", overrides)
        tokenizer = Tokenizer(config.paths.bpe_model)
        self.model = build_model(config.model, tokenizer.vocab_size).train()
        ckpt = latest_checkpoint(Path(exp_dir))
        if ckpt is not None and load_weights:
            self.model.load_state_dict(load_checkpoint(ckpt)["model"])
        self.optimizer, _ = build_optimizer(self.model, config.optim)
        self.objective = TransducerObjective(config.loss, tokenizer)
        self.data = AsrDataModule(config.data)
        self.precision = partial(autocast, torch.device("cpu"), config.train.amp)

    def batches(self, cuts_path: str | Path, count: int) -> list[dict]:
        """The first ``count`` batches of ``cuts_path`` at the config's max_duration, in manifest order."""
        from kd.data.io import load_cuts

        batches = []
        for batch in self.data.eval_dataloader(load_cuts(cuts_path)):
            if len(batches) == count:
                break
            batches.append(batch)
        return batches

    def __call__(self, batch: dict) -> int:
        """One step on ``batch``; returns its encoder frames."""
        with self.precision():
            loss = self.objective(self.model, batch, 10**6)  # a step count past every warm-up ramp
        (loss.total / loss.num_frames).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.num_frames
