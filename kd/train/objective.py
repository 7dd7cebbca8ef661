"""Training objectives: what one batch contributes to the loss.

The trainer is objective-agnostic: it asks an objective for a dict of named, summed loss terms and the
number of frames they were summed over. The transducer objective here is the plain pruned RNN-T loss with
icefall's warm-up ramp; KD objectives add terms to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from kd.data.tokenizer import Tokenizer


@dataclass
class LossConfig:
    prune_range: int = 5  # s_range of the pruned RNN-T loss
    lm_scale: float = 0.25  # smoothing of the simple loss towards the decoder-only distribution
    am_scale: float = 0.0  # smoothing of the simple loss towards the encoder-only distribution
    simple_loss_scale: float = 0.5  # weight of the simple loss after warm-up
    warm_step: int = 2000  # batches over which the simple/pruned weights ramp (icefall)
    rnnt_type: str = "regular"  # regular | modified
    ctc_scale: float = 0.0  # weight of the auxiliary CTC loss on the encoder (needs model.ctc_head: true)
    # Batches over which the encoder's blocks fade in from 90% bypassed (icefall's model_warm_step); 0: off.
    layer_warm_step: int = 0


@dataclass
class BatchLoss:
    """Summed loss terms of one batch.

    Attributes:
        total: the scalar to back-propagate (sum over utterances of the weighted terms).
        terms: each named term, summed over the batch, detached (for logging).
        num_frames: encoder frames in the batch (the normaliser for logging and for the gradient).
        num_utts: utterances in the batch.
    """

    total: torch.Tensor
    terms: dict[str, float]
    num_frames: int
    num_utts: int


class Objective(Protocol):
    def __call__(self, model: torch.nn.Module, batch: dict[str, Any], step: int) -> BatchLoss: ...


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return getattr(model, "module", model)


def layer_warmup(config: LossConfig, step: int) -> float:
    """The fraction of the encoder's layer warm-up done at global batch ``step`` (1.0 when off)."""
    return 1.0 if config.layer_warm_step <= 0 else step / config.layer_warm_step


def warmup_scales(config: LossConfig, step: int) -> tuple[float, float]:
    """(simple_scale, pruned_scale) at global batch ``step``.

    Early on the pruned loss is unreliable (the prune ranges come from an untrained simple joiner), so it
    starts at 0.1 and the simple loss at 1.0; both ramp linearly to their final values over ``warm_step``.
    """
    if step >= config.warm_step:
        return config.simple_loss_scale, 1.0
    frac = step / config.warm_step
    return 1.0 - frac * (1.0 - config.simple_loss_scale), 0.1 + 0.9 * frac


class TransducerObjective:
    """The pruned RNN-T loss of a transducer on the batch's transcripts."""

    def __init__(self, config: LossConfig, tokenizer: Tokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any], step: int) -> BatchLoss:
        device = next(model.parameters()).device
        features = batch["features"].to(device)
        feature_lens = batch["feature_lens"].to(device)
        labels = self.tokenizer.encode(batch["texts"])
        out = model(
            features,
            feature_lens,
            labels,
            prune_range=self.config.prune_range,
            am_scale=self.config.am_scale,
            lm_scale=self.config.lm_scale,
            rnnt_type=self.config.rnnt_type,
            reduction="sum",
            warmup=layer_warmup(self.config, step),
        )
        simple_scale, pruned_scale = warmup_scales(self.config, step)
        total = simple_scale * out.simple_loss + pruned_scale * out.pruned_loss
        terms = {"simple": out.simple_loss.item(), "pruned": out.pruned_loss.item()}
        if self.config.ctc_scale > 0:
            final = getattr(out, "second_pass", out)  # a cascaded model's CTC head reads its final pass
            ctc = unwrap(model).ctc_loss(
                final.encoder_out, final.encoder_out_lens, final.symbols, final.boundary[:, 2]
            )
            total = total + self.config.ctc_scale * ctc
            terms["ctc"] = ctc.item()
        return BatchLoss(
            total=total,
            terms=terms,
            num_frames=int(out.encoder_out_lens.sum().item()),
            num_utts=features.size(0),
        )
