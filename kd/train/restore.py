"""Rebuilding a trained model from its experiment directory (for decoding, targets and export)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from kd.config import ConfigError, load_yaml
from kd.data.tokenizer import Tokenizer
from kd.models.colearn import colearn_part
from kd.train.checkpoint import average_state_dicts, select_for_averaging
from kd.train.config import TrainConfig
from kd.train.distill import build_training_model
from kd.train.sparsity import apply_masks, masks_from_checkpoint


@dataclass
class TrainedModel:
    model: torch.nn.Module  # in eval mode
    tokenizer: Tokenizer
    config: TrainConfig  # the experiment's (a co-learned teacher's architecture is config.kd.teacher_model)
    checkpoints: list[Path]  # the averaged checkpoints


def load_trained_model(
    exp_dir: Path,
    epoch: int | None = None,
    avg: int = 1,
    device: torch.device | str = "cpu",
    bpe_model: str | None = None,
    part: str | None = None,
) -> TrainedModel:
    """Builds the model of ``exp_dir/config.yaml`` with the average of epochs ``epoch-avg+1 .. epoch``;
    a sparse model's pruned weights are zeroed again with the last checkpoint's masks.

    A co-learning experiment (``kd.mode: colearn``) holds a teacher and a student: ``part`` picks one, as a
    plain transducer (None: the student). Any other experiment holds one model, which ``part`` None or
    "student" gives.

    Raises:
        ConfigError: when the tokenizer's vocabulary does not match the model's output layer, or ``part``
            is "teacher" for an experiment that did not co-learn one.
        CheckpointError: when a checkpoint is missing or unreadable.
    """
    exp_dir = Path(exp_dir)
    config = load_yaml(TrainConfig, exp_dir / "config.yaml")
    tokenizer = Tokenizer(bpe_model or config.paths.bpe_model)
    paths = select_for_averaging(exp_dir, epoch, avg)
    state = average_state_dicts(paths)
    model = build_training_model(config, tokenizer.vocab_size)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(
            f"{paths[-1]} does not fit the model built from {exp_dir / 'config.yaml'} with the tokenizer "
            f"{bpe_model or config.paths.bpe_model} (vocabulary {tokenizer.vocab_size}); was the model "
            f"trained with another BPE model? ({str(e).splitlines()[0]})"
        ) from e
    masks = masks_from_checkpoint(paths[-1])
    if masks is not None:
        # Averaging revives the weights pruned in the last checkpoint but not in the earlier ones.
        apply_masks(model, masks)
    try:
        model = colearn_part(model, part or "student")
    except ValueError as e:
        raise ConfigError(f"{exp_dir}: {e}") from e
    return TrainedModel(model.to(device).eval(), tokenizer, config, paths)
