"""Trains the LSTM LM on training transcripts or a text file (shallow fusion in decoding and targets).

    python -m kd.bin.train_lm --train-cuts data/synth/fbank/synth_cuts_train.jsonl.gz \
        --valid-cuts data/synth/fbank/synth_cuts_dev.jsonl.gz --bpe-model data/synth/lang_bpe_32/bpe.model \
        --exp-dir exp/synth/lm [--config egs/synth/conf/lm.yaml] [num_epochs=5 hidden_dim=256 ...]

``--train-text FILE`` (one sentence per line, plain or .gz, written as the transcripts are) replaces
``--train-cuts``: the synthetic corpus' ``lm-text.txt.gz``, LibriSpeech's ``librispeech-lm-norm.txt`` (40 M
lines: it is tokenised once, resumably, into ``<exp-dir>/text_tokens/`` and read from disk, not memory).

Writes epoch-N.pt, config.yaml, ppl.json (training and validation perplexity per epoch), log/ and
tensorboard/ into --exp-dir. Rerunning the same command resumes after the newest checkpoint; with a larger
num_epochs it trains the additional epochs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kd.config import apply_overrides, from_dict, load_yaml
from kd.lm.config import LmConfig
from kd.lm.train import LmTrainer
from kd.logging_utils import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    train = parser.add_mutually_exclusive_group(required=True)
    train.add_argument("--train-cuts", type=Path, help="CutSet whose transcripts train the LM")
    train.add_argument(
        "--train-text", type=Path, help="or a text file (plain or .gz) of one sentence per line"
    )
    parser.add_argument("--valid-cuts", type=Path, required=True, help="CutSet for the validation perplexity")
    parser.add_argument("--bpe-model", type=Path, required=True, help="the transducer's sentencepiece model")
    parser.add_argument(
        "--exp-dir", type=Path, required=True, help="experiment directory (checkpoints, logs)"
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML LM config (default: LmConfig's)")
    parser.add_argument("overrides", nargs="*", help="config overrides: key=value")
    return parser


def load_config(path: Path | None, overrides: list[str]) -> LmConfig:
    """The config of ``path`` (None: the defaults) with ``key=value`` overrides (values parsed as YAML)."""
    if path is not None:
        return load_yaml(LmConfig, path, overrides)
    return from_dict(LmConfig, apply_overrides({}, overrides), where="the overrides")


def main() -> None:
    args = get_parser().parse_args()
    setup_logging(args.exp_dir / "log", "train_lm")
    config = load_config(args.config, args.overrides)
    LmTrainer(
        config, args.exp_dir, args.train_cuts, args.valid_cuts, args.bpe_model, train_text=args.train_text
    ).fit()


if __name__ == "__main__":
    main()
