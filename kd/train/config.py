"""The training config: one YAML file per experiment, mapped onto these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

from kd.data.datamodule import DataConfig
from kd.models import ModelConfig
from kd.train.distill import KdConfig
from kd.train.objective import LossConfig
from kd.train.optim import OptimConfig
from kd.train.sparsity import SparsityConfig


@dataclass
class PathsConfig:
    train_cuts: str = ""  # CutSet with features (jsonl.gz) to train on
    valid_cuts: str = ""  # CutSet for the per-epoch validation loss
    bpe_model: str = ""  # sentencepiece model; its vocabulary size sets the model's output size
    # Checkpoint (.pt) or experiment dir (its newest checkpoint) whose model weights start a fresh run, e.g.
    # the teacher a sparse student is pruned from (same architecture). Ignored when the run resumes.
    init_from: str = ""
    # Unlabelled cuts (with their teacher targets: python -m kd.bin.generate_targets) mixed into training by
    # the KD methods that use them (one_best, soft_lattice, collapsed, encoder_logits, hard).
    unlabelled_cuts: str = ""


@dataclass
class LoopConfig:
    num_epochs: int = 10
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bfloat16 autocast on CUDA and on CPUs with native bfloat16 (AVX512-BF16, AMX)
    log_interval: int = 20  # batches between tensorboard/log lines
    save_every_n: int = 200  # batches between mid-epoch checkpoints (0: end of epoch only)
    keep_last_k: int = 2  # mid-epoch checkpoints kept
    max_batches_per_epoch: int = 0  # stop an epoch early after this many batches (0: no limit)
    num_threads: int = 0  # torch intra-op threads on CPU (0: leave torch's default)
    valid_every_n_epochs: int = 1  # the validation loss after every N-th epoch and after the last

    def __post_init__(self) -> None:
        if self.valid_every_n_epochs < 1:
            raise ValueError(f"train.valid_every_n_epochs={self.valid_every_n_epochs} must be at least 1")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)  # gradual magnitude pruning (off)
    kd: KdConfig = field(default_factory=KdConfig)  # the distillation term (off: method none)
