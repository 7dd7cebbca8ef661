"""Decodes test sets with a trained transducer and scores them.

    python -m kd.bin.decode --exp-dir exp/synth/teacher --avg 2 \
        --methods greedy_search modified_beam_search --cuts data/synth/fbank/synth_cuts_test.jsonl.gz

Writes recogs-/errs-/wer-<set>-<method>.txt (+ .json) into --exp-dir; <set> is the cuts file's split name.
A co-learning experiment (kd.mode: colearn) holds a teacher and a student: the student is decoded unless
--part teacher is given, whose results are tagged teacher_<method> in the same --exp-dir.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import torch
from lhotse import CutSet

from kd.data.datamodule import AsrDataModule, DataConfig
from kd.decode import METHODS, decode_dataset, save_results
from kd.logging_utils import setup_logging
from kd.models import count_parameters
from kd.train.restore import load_trained_model
from kd.train.trainer import resolve_device


def set_name(cuts_path: Path) -> str:
    """``data/synth/fbank/synth_cuts_test.jsonl.gz`` -> ``test``."""
    m = re.match(r"^(?:.*_)?cuts_(.+?)\.jsonl(?:\.gz)?$", cuts_path.name)
    return m.group(1) if m else cuts_path.name.split(".")[0]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp-dir", type=Path, required=True)
    parser.add_argument("--cuts", type=Path, nargs="+", required=True, help="CutSets with features to decode")
    parser.add_argument("--methods", nargs="+", default=["greedy_search"], choices=METHODS)
    parser.add_argument("--epoch", type=int, default=None, help="last epoch to use (default: the newest)")
    parser.add_argument("--avg", type=int, default=1, help="number of epoch checkpoints to average")
    parser.add_argument("--beam", type=int, default=4, help="beam of modified_beam_search")
    parser.add_argument("--max-duration", type=float, default=300.0, help="seconds of audio per batch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-threads", type=int, default=0, help="torch threads on CPU (0: default)")
    parser.add_argument(
        "--pass",
        dest="decode_pass",
        choices=("final", "first"),
        default="final",
        help="cascaded models: decode the final (second) pass or the causal first pass (results tagged "
        "first_pass_<method>)",
    )
    parser.add_argument(
        "--part",
        choices=("student", "teacher"),
        default=None,
        help="co-learning experiments (kd.mode: colearn): the model to decode (default: the student); "
        "the teacher's results are tagged teacher_<method>",
    )
    return parser


def main() -> None:
    args = get_parser().parse_args()
    setup_logging(args.exp_dir / "log", "decode")
    device = resolve_device(args.device)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    trained = load_trained_model(args.exp_dir, args.epoch, args.avg, device, part=args.part)
    counts = count_parameters(trained.model)
    model = trained.model
    if args.decode_pass == "first":
        if not hasattr(model, "first_pass"):
            raise SystemExit(f"--pass first: {args.exp_dir} holds a one-pass model (no model.second_pass)")
        model = model.first_pass
    epoch = int(trained.checkpoints[-1].stem.split("-")[1])
    model_info = {
        "num_params": counts["total"],
        "nonzero_params": counts["nonzero"],
        "epoch": epoch,
        "avg": args.avg,
    }
    if args.part is not None:
        model_info["part"] = args.part
    data = AsrDataModule(DataConfig(max_duration=args.max_duration))
    for cuts_path in args.cuts:
        if not cuts_path.is_file():
            raise FileNotFoundError(f"{cuts_path} not found; run the data stages of run.sh first")
        cuts = CutSet.from_file(cuts_path)
        name = set_name(cuts_path)
        for method in args.methods:
            results, stats = decode_dataset(
                model,
                data.eval_dataloader(cuts),
                trained.tokenizer,
                method,
                beam=args.beam,
                device=device,
            )
            rtf = stats["decode_seconds"] / max(stats["audio_seconds"], 1e-9)
            tag = f"{method}_beam_{args.beam}" if method == "modified_beam_search" else method
            if args.decode_pass == "first":
                tag = f"first_pass_{tag}"
            if args.part == "teacher":
                tag = f"teacher_{tag}"
            wer = save_results(args.exp_dir, name, tag, results, rtf=rtf, model_info=model_info)
            logging.info("%s %s: %s (RTF %.4f)", name, tag, wer, rtf)


if __name__ == "__main__":
    main()
