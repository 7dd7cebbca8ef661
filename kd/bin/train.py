"""Trains a transducer from a YAML config.

    python -m kd.bin.train --config egs/synth/conf/teacher.yaml --exp-dir exp/synth/teacher \
        [paths.train_cuts=... train.num_epochs=5 ...]
    torchrun --nproc-per-node 2 -m kd.bin.train ...      # DDP (gloo on CPU, NCCL on GPUs)

Rerunning the same command resumes from the newest checkpoint in --exp-dir.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kd.config import load_yaml
from kd.logging_utils import setup_logging
from kd.train.config import TrainConfig
from kd.train.trainer import Trainer


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML training config")
    parser.add_argument(
        "--exp-dir", type=Path, required=True, help="experiment directory (checkpoints, logs)"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides: key.sub=value")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    setup_logging(args.exp_dir / "log", "train")
    config = load_yaml(TrainConfig, args.config, args.overrides)
    Trainer(config, args.exp_dir).fit()


if __name__ == "__main__":
    main()
