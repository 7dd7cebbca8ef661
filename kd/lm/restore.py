"""Rebuilding a trained LM from its experiment directory (for decoding and target generation)."""

from __future__ import annotations

from pathlib import Path

import torch

from kd.config import ConfigError, from_dict
from kd.data.tokenizer import Tokenizer
from kd.lm.config import LmConfig
from kd.lm.model import LstmLm, build_lm
from kd.targets.manifest import TokenizerInfo, tokenizer_info
from kd.train.checkpoint import CheckpointError, epoch_checkpoints, load_checkpoint


def lm_checkpoint(exp_dir: str | Path, epoch: int | None = None) -> Path:
    """``exp_dir/epoch-<epoch>.pt`` (None: the newest epoch).

    Raises:
        CheckpointError: the directory holds no such checkpoint.
    """
    found = epoch_checkpoints(Path(exp_dir))
    if not found:
        raise CheckpointError(f"no epoch-N.pt checkpoints in {exp_dir}; train the LM first (kd.bin.train_lm)")
    epoch = max(found) if epoch is None else epoch
    if epoch not in found:
        raise CheckpointError(f"{exp_dir} has no epoch-{epoch}.pt; its LM epochs are {sorted(found)}")
    return found[epoch]


def check_lm_tokenizer(recorded: TokenizerInfo, tokenizer: TokenizerInfo, where: str) -> None:
    """Refuses a tokenizer other than the one the LM at ``where`` was trained with (compared by content).

    Raises:
        ConfigError: naming both tokenizers.
    """
    if recorded.vocab_size != tokenizer.vocab_size:
        what = f"has {tokenizer.vocab_size} tokens, not the LM's {recorded.vocab_size}"
    elif recorded.sha256 != tokenizer.sha256:
        what = "has the LM's vocabulary size but other tokens"
    else:
        return
    raise ConfigError(
        f"{where}: the LM was trained with the BPE model {recorded.describe()}, but {tokenizer.describe()} "
        f"{what}, so the token ids would not match; train the LM with this BPE model "
        "(python -m kd.bin.train_lm --bpe-model ...)"
    )


def load_lm(
    exp_dir: str | Path,
    epoch: int | None = None,
    tokenizer: Tokenizer | None = None,
    device: torch.device | str = "cpu",
) -> LstmLm:
    """The LM of ``exp_dir/epoch-<epoch>.pt`` (None: the newest), in eval mode on ``device``.

    Args:
        tokenizer: the tokenizer the LM's token ids must mean (the transducer's); None skips the check.

    Raises:
        CheckpointError: no such checkpoint, or an unreadable one.
        ConfigError: ``tokenizer`` is not the BPE model the LM was trained with.
    """
    path = lm_checkpoint(exp_dir, epoch)
    state = load_checkpoint(path)
    if "tokenizer" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an LM checkpoint (written by python -m kd.bin.train_lm)")
    recorded = from_dict(TokenizerInfo, state["tokenizer"], where=f"{path}: tokenizer")
    if tokenizer is not None:
        check_lm_tokenizer(recorded, tokenizer_info(tokenizer), str(path))
    model = build_lm(from_dict(LmConfig, state["config"], where=f"{path}: config"), recorded.vocab_size)
    model.load_state_dict(state["model"])
    return model.to(device).eval()
