"""Sparse students by gradual magnitude pruning (Zhu & Gupta 2017; METHODS.md (a)).

Schedule: from step t0 = ``start_step``, every Δt = ``update_every`` optimiser steps until
``end_step`` = t0 + n Δt, the masks are recomputed for the sparsity

    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n Δt))^3,

s_i before t0 and s_f after ``end_step``: many weights go early, while the network is most redundant, and
few near the end, when each one matters.

Masks are per layer: every pruned tensor reaches s_t on its own, dropping its smallest-magnitude entries.
A global threshold would compare weights of different scales (fan-in scaled initialisations, the
subsampling convolutions, depthwise kernels, the joiner's output layer) and could empty one tensor while
leaving another dense; per layer, every layer keeps the same share, as in the paper.

Pruned weights stay exactly zero: :meth:`Pruner.step` runs after every optimiser step and zeroes them again,
so AdamW's momentum and weight decay (which move a weight even when its gradient is zero) never bring one
back into the forward pass. Masks only grow (a pruned weight is never revived), travel in checkpoints
(:meth:`Pruner.state_dict`), and are re-applied after checkpoint averaging, which would otherwise revive the
weights pruned in the last checkpoint but not in earlier ones (:func:`masks_from_checkpoint`,
:func:`apply_masks`).

Selection: ``layers`` are fnmatch patterns over parameter names (``encoder.*``); they select the weights of
Linear and Conv layers. Any other parameter (an embedding table, LSTM weights, a bias, a norm gain) is
pruned only when a pattern names it exactly.

Compact storage (:func:`save_compact_state_dict`): a tensor with zeros is stored as a bitmap of its non-zero
entries plus those entries, when that is smaller than dense: 1/8 + 4 (1 - s) bytes an fp32 entry instead of
4, i.e. 43% of dense at s = 0.6 and 13% at s = 0.9 (CSR with int32 column indices would need 8 (1 - s):
80% and 20%).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kd.config import ConfigError
from kd.models import count_parameters
from kd.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

DEFAULT_LAYERS = ("encoder.*", "decoder.*", "joiner.*")
# Layers whose ``weight`` the patterns select (embedding tables and the like only when named exactly).
_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_COMPACT_FORMAT = "kd-compact-state-dict-v1"
# Same-size integer types: a tensor's entries are compared bit for bit, so -0.0 and NaN payloads survive.
_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass
class SparsityConfig:
    """Gradual magnitude pruning; steps count optimiser steps (the trainer's global batch count)."""

    enabled: bool = False
    final_sparsity: float = 0.6  # s_f, fraction of zeros in every pruned tensor at the end
    initial_sparsity: float = 0.0  # s_i, at start_step
    start_step: int = 0  # t0
    end_step: int = 2000  # t0 + n * update_every
    update_every: int = 100  # Δt, steps between mask updates
    layers: list[str] = field(default_factory=lambda: list(DEFAULT_LAYERS))

    def __post_init__(self) -> None:
        _require(
            0.0 <= self.initial_sparsity <= self.final_sparsity < 1.0,
            f"sparsity: need 0 <= initial_sparsity ({self.initial_sparsity}) <= final_sparsity "
            f"({self.final_sparsity}) < 1",
        )
        _require(self.start_step >= 0, f"sparsity.start_step={self.start_step} must be >= 0")
        _require(self.update_every >= 1, f"sparsity.update_every={self.update_every} must be >= 1")
        span = self.end_step - self.start_step
        _require(
            span > 0 and span % self.update_every == 0,
            f"sparsity.end_step={self.end_step} must be start_step ({self.start_step}) plus a positive "
            f"multiple of update_every ({self.update_every}), "
            f"e.g. {self.start_step + 10 * self.update_every}",
        )
        _require(len(self.layers) > 0, "sparsity.layers is empty; give patterns such as 'encoder.*'")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def sparsity_at(config: SparsityConfig, step: int) -> float:
    """The cubic schedule s_t at optimiser step ``step`` (s_i before start_step, s_f after end_step)."""
    if step <= config.start_step:
        return config.initial_sparsity
    if step >= config.end_step:
        return config.final_sparsity
    remaining = 1.0 - (step - config.start_step) / (config.end_step - config.start_step)
    return config.final_sparsity + (config.initial_sparsity - config.final_sparsity) * remaining**3


def is_update_step(config: SparsityConfig, step: int) -> bool:
    """True at t0, t0 + Δt, ..., t0 + n Δt: where the masks are recomputed."""
    return (
        config.start_step <= step <= config.end_step and (step - config.start_step) % config.update_every == 0
    )


def prunable_parameters(model: nn.Module, patterns: list[str] | tuple[str, ...]) -> dict[str, nn.Parameter]:
    """The parameters ``patterns`` select (see the module docstring), in registration order.

    A tensor shared by two modules (the tied decoder's embedding) appears once, under its first name.

    Raises:
        ValueError: a pattern matches no parameter name (a typo would otherwise prune nothing silently).
    """
    layer_weights = {id(m.weight) for m in model.modules() if isinstance(m, _WEIGHT_LAYERS)}
    named = dict(model.named_parameters(remove_duplicate=False))
    chosen: set[int] = set()
    for pattern in patterns:
        hits = [name for name in named if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            examples = ", ".join(list(named)[:3])
            raise ValueError(
                f"sparsity.layers pattern {pattern!r} matches no parameter of the model (names look like "
                f"{examples}); fix the pattern"
            )
        chosen.update(id(named[n]) for n in hits if id(named[n]) in layer_weights or n == pattern)
    return {name: p for name, p in model.named_parameters() if id(p) in chosen}


def magnitude_mask(
    weight: torch.Tensor, sparsity: float, previous: torch.Tensor | None = None
) -> torch.Tensor:
    """Keeps all but the round(sparsity * numel) smallest-magnitude entries of ``weight``.

    Args:
        weight: any shape.
        sparsity: fraction of entries to prune, in [0, 1).
        previous: bool mask of the same shape (True = kept); entries it pruned are pruned first, so masks
            only grow while the sparsity rises.
    Returns:
        bool mask shaped like ``weight``, True where the entry is kept.
    """
    score = weight.detach().abs().flatten().float()
    if previous is not None:
        score = score.masked_fill(~previous.flatten(), -1.0)
    k = round(sparsity * score.numel())
    mask = torch.ones_like(score, dtype=torch.bool)
    mask[torch.topk(score, k, largest=False).indices] = False
    return mask.view_as(weight)


class Pruner:
    """Holds the masks of ``model``'s prunable weights and enforces them through training.

    Call :meth:`step` after every optimiser step with the number of steps done (and once before training
    with the current count): it recomputes the masks at the schedule's update steps and zeroes the pruned
    weights.
    """

    def __init__(self, model: nn.Module, config: SparsityConfig) -> None:
        self.config = config
        self.params = prunable_parameters(model, config.layers)
        if not self.params:
            raise ValueError(
                f"sparsity.layers {config.layers} select no Linear/Conv weight; name other tensors exactly"
            )
        self.masks: dict[str, torch.Tensor] = {}
        self.sparsity: float | None = None  # the level the current masks were computed for

    def step(self, step: int) -> None:
        """Recomputes the masks at an update step (or when there are none yet), then applies them."""
        if self.sparsity is None or is_update_step(self.config, step):
            self.update_masks(sparsity_at(self.config, step))
        self.apply()

    @torch.no_grad()
    def update_masks(self, sparsity: float) -> None:
        """Per-layer magnitude masks at ``sparsity`` on the current weights."""
        self.masks = {
            name: magnitude_mask(p, sparsity, self.masks.get(name)) for name, p in self.params.items()
        }
        self.sparsity = sparsity

    @torch.no_grad()
    def apply(self) -> None:
        """Zeroes the pruned weights (to +0.0, so a compact copy stores nothing for them)."""
        for name, mask in self.masks.items():
            self.params[name].masked_fill_(~mask, 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "masks": {k: m.cpu() for k, m in self.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores masks saved by :meth:`state_dict`.

        Raises:
            ValueError: the masks do not cover the same tensors with the same shapes.
        """
        masks = state["masks"]
        if set(masks) != set(self.params):
            raise ValueError(
                f"the saved pruning masks cover {sorted(masks)[:3]}... but sparsity.layers selects "
                f"{sorted(self.params)[:3]}...: was sparsity.layers changed since the checkpoint?"
            )
        _check_shapes(masks, self.params)
        self.masks = {k: m.to(self.params[k].device) for k, m in masks.items()}
        self.sparsity = state["sparsity"]


def _check_shapes(masks: dict[str, torch.Tensor], params: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        if mask.shape != params[name].shape:
            raise ValueError(
                f"pruning mask {name} has shape {tuple(mask.shape)}, the weight {tuple(params[name].shape)}"
            )


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zeroes the weights of ``model`` that ``masks`` (name -> bool, True = kept) prune.

    Call it after loading averaged weights. It works on the model's parameters, not on a state dict,
    because a tied tensor appears in a state dict under two names and would be loaded from either.

    Raises:
        ValueError: a mask names no parameter of the model or has the wrong shape.
    """
    params = dict(model.named_parameters())
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ValueError(f"pruning masks for {unknown[:3]} but the model has no such parameters")
    _check_shapes(masks, params)
    for name, mask in masks.items():
        params[name].masked_fill_(~mask.to(params[name].device), 0.0)


def masks_from_checkpoint(path: Path) -> dict[str, torch.Tensor] | None:
    """The pruning masks saved in a training checkpoint, or None when it was trained without pruning."""
    pruner = load_checkpoint(path, mmap=True).get("pruner")
    return None if pruner is None else pruner["masks"]


def sparsity_report(
    model: nn.Module, layers: list[str] | tuple[str, ...] = DEFAULT_LAYERS
) -> dict[str, float | int]:
    """The true sparsity of the tensors ``layers`` selects, and the model's parameter counts.

    Returns:
        ``sparsity`` (zeros / entries over the selected tensors), ``min_sparsity`` and ``max_sparsity``
        (over those tensors), ``pruned_params`` (their entries), ``total`` and ``nonzero`` (every parameter,
        as :func:`kd.models.count_parameters`).
    """
    params = prunable_parameters(model, layers)
    sizes = [p.numel() for p in params.values()]
    zeros = [p.numel() - int(torch.count_nonzero(p.detach())) for p in params.values()]
    per_tensor = [z / n for z, n in zip(zeros, sizes)]
    counts = count_parameters(model)
    return {
        "sparsity": sum(zeros) / max(sum(sizes), 1),
        "min_sparsity": min(per_tensor, default=0.0),
        "max_sparsity": max(per_tensor, default=0.0),
        "pruned_params": sum(sizes),
        "total": counts["total"],
        "nonzero": counts["nonzero"],
    }


def _nonzero_bits(t: torch.Tensor) -> torch.Tensor:
    """(N,) bool: entries of flattened ``t`` whose bit pattern is not all zero."""
    return t.contiguous().view(_BITS[t.element_size()]).flatten() != 0


def save_compact_state_dict(state_dict: dict[str, torch.Tensor], path: Path) -> int:
    """Writes ``state_dict`` with sparse tensors as bitmap + non-zero values; returns the file's bytes.

    A floating-point tensor is stored compactly when that is smaller than dense; other tensors are stored
    as they are. Names that share one tensor (a tied embedding) are stored once. The write is atomic.
    """
    entries: dict[str, dict[str, Any]] = {}
    seen: dict[tuple, str] = {}
    for name, t in state_dict.items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
        if key in seen:
            entries[name] = {"alias": seen[key]}
            continue
        seen[key] = name
        t = t.detach().cpu()
        if t.is_floating_point() and t.numel() > 0 and t.element_size() in _BITS:
            keep = _nonzero_bits(t)
            compact_bytes = (t.numel() + 7) // 8 + int(keep.sum()) * t.element_size()
            if compact_bytes < t.numel() * t.element_size():
                bitmap = torch.from_numpy(np.packbits(keep.numpy()))
                entries[name] = {"shape": tuple(t.shape), "bitmap": bitmap, "values": t.flatten()[keep]}
                continue
        entries[name] = {"dense": t.clone()}
    save_checkpoint(Path(path), {"format": _COMPACT_FORMAT, "tensors": entries})
    return Path(path).stat().st_size


def load_compact_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict written by :func:`save_compact_state_dict`, exactly (bit for bit), on the CPU.

    Raises:
        CheckpointError: the file is missing, unreadable or not in this format.
    """
    data = load_checkpoint(Path(path))
    if not isinstance(data, dict) or data.get("format") != _COMPACT_FORMAT:
        raise CheckpointError(f"{path} is not a compact state dict (written by save_compact_state_dict)")
    out: dict[str, torch.Tensor] = {}
    for name, entry in data["tensors"].items():
        if "alias" in entry:
            out[name] = out[entry["alias"]]
        elif "dense" in entry:
            out[name] = entry["dense"]
        else:
            values = entry["values"]
            numel = int(np.prod(entry["shape"], dtype=np.int64))
            keep = torch.from_numpy(np.unpackbits(entry["bitmap"].numpy(), count=numel).astype(bool))
            flat = torch.zeros(numel, dtype=values.dtype)
            flat[keep] = values
            out[name] = flat.view(entry["shape"])
    return out
