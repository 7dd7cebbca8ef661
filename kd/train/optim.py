"""Optimiser and learning-rate schedule.

The optimiser is AdamW or icefall's ScaledAdam (:mod:`kd.train.scaled_adam`). The schedule is icefall's
Eden shape (decay in both batches and epochs) multiplied by a linear warm-up, which is what lets a
transducer train stably from scratch at a high peak learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kd.config import ConfigError
from kd.train.scaled_adam import ScaledAdam

OPTIMIZERS = ("adamw", "scaled_adam")


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | scaled_adam
    lr: float = 3e-3  # peak learning rate (after warm-up); for scaled_adam the relative change per step
    weight_decay: float = 1e-3  # AdamW decoupled weight decay (scaled_adam bounds each tensor's RMS instead)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_batches: int = 500  # linear warm-up from warmup_start * lr
    warmup_start: float = 0.1
    lr_batches: float = 5000.0  # Eden: batches after which the lr starts decaying noticeably
    lr_epochs: float = 6.0  # Eden: epochs after which the lr starts decaying noticeably
    grad_clip: float = 5.0  # AdamW: max global grad norm (0 disables clipping)
    # scaled_adam: clip above this times the median of the last 100 gradient norms (0 disables clipping)
    clipping_scale: float = 2.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optim.name: {self.name!r} is not one of {', '.join(OPTIMIZERS)}")


class EdenWarmup(torch.optim.lr_scheduler.LRScheduler):
    """lr = peak * warmup(b) * ((b² + B²)/B²)^-¼ * ((e² + E²)/E²)^-¼.

    ``step()`` is called per batch; ``set_epoch(e)`` at the start of every epoch (0-based count of finished
    epochs), so the state is exact after a resume.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: OptimConfig) -> None:
        self.config = config
        self.epoch = 0
        super().__init__(optimizer)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        # Apply at once: the first batch of the epoch must already use the new epoch's decay.
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def factor(self, batch: int) -> float:
        c = self.config
        warm = 1.0
        if c.warmup_batches > 0 and batch < c.warmup_batches:
            warm = c.warmup_start + (1.0 - c.warmup_start) * batch / c.warmup_batches
        batch_decay = ((batch**2 + c.lr_batches**2) / c.lr_batches**2) ** -0.25
        epoch_decay = ((self.epoch**2 + c.lr_epochs**2) / c.lr_epochs**2) ** -0.25
        return warm * batch_decay * epoch_decay

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["epoch"] = self.epoch
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.epoch = state_dict.pop("epoch", 0)
        super().load_state_dict(state_dict)


def build_optimizer(model: torch.nn.Module, config: OptimConfig) -> tuple[torch.optim.Optimizer, EdenWarmup]:
    """The optimiser (AdamW without weight decay on biases and norm gains, or ScaledAdam) and the schedule."""
    if config.name == "scaled_adam":
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = ScaledAdam(params, lr=config.lr, betas=config.betas, clipping_scale=config.clipping_scale)
        return optimizer, EdenWarmup(optimizer, config)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=config.betas,
        # One kernel for all parameters instead of several ops per tensor: the same update up to rounding,
        # in a third of the time on the CPU (2-4% of a training step there).
        fused=True,
    )
    return optimizer, EdenWarmup(optimizer, config)
