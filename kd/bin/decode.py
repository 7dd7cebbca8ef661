"""Decodes test sets with a trained transducer and scores them.

    python -m kd.bin.decode --exp-dir exp/synth/teacher --avg 2 \
        --methods greedy_search modified_beam_search --cuts data/synth/fbank/synth_cuts_test.jsonl.gz

Writes recogs-/errs-/wer-<set>-<method>.txt (+ .json) into --exp-dir; <set> is the cuts file's split name.
--epoch 12 --avg 3 --suffix epoch-12-avg-3 tags them <method>_epoch-12-avg-3, beside other epochs' decodes.
A co-learning experiment (kd.mode: colearn) holds a teacher and a student: the student is decoded unless
--part teacher is given, whose results are tagged teacher_<method> in the same --exp-dir.
The method modified_beam_search_lm_shallow_fusion with --lm-exp exp/synth/lm --lm-scale 0.3 fuses an LSTM LM
(python -m kd.bin.train_lm) into modified beam search; its results are tagged
modified_beam_search_beam_<beam>_lm_<scale>, beside those without the LM.
--blank-penalty 1.5 subtracts 1.5 from the joiner's blank logit in every method (icefall's blank_penalty:
it offsets the LM's cost of every token, and a deletion-prone model's bias towards blank); its results are
tagged <method>_bp_<penalty>. --lm-blank-penalty sets it for the LM-fused search alone.
All methods decode each batch from one encoder forward (the streaming search runs its own, chunk by chunk).
A streaming model (causal encoder, or a cascaded model's causal first pass) also gets its latency measured on
the first --latency-utts cuts of each set (kd.decode.latency; 0: off), logged and stored as "latency" in every
wer-<set>-*.json of that set; a non-causal model is decoded without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any

import torch
from lhotse import CutSet

from kd.data.datamodule import AsrDataModule, DataConfig
from kd.decode import METHODS, Search, decode_searches, save_results
from kd.decode.latency import measure_latency, streaming_part
from kd.lm import lm_checkpoint, load_lm
from kd.logging_utils import setup_logging
from kd.models import count_parameters
from kd.train.restore import load_trained_model
from kd.train.trainer import resolve_device

LM_METHOD = "modified_beam_search_lm_shallow_fusion"
"""The CLI's name (icefall's) for modified beam search with the LM of --lm-exp fused."""


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
    parser.add_argument("--methods", nargs="+", default=["greedy_search"], choices=(*METHODS, LM_METHOD))
    parser.add_argument("--epoch", type=int, default=None, help="last epoch to use (default: the newest)")
    parser.add_argument("--avg", type=int, default=1, help="number of epoch checkpoints to average")
    parser.add_argument("--beam", type=int, default=4, help="beam of modified_beam_search")
    parser.add_argument(
        "--lm-exp",
        type=Path,
        default=None,
        help=f"LM experiment dir for shallow fusion (method {LM_METHOD})",
    )
    parser.add_argument("--lm-epoch", type=int, default=None, help="the LM's epoch (default: the newest)")
    parser.add_argument("--lm-scale", type=float, default=None, help="weight of the LM's log-probabilities")
    parser.add_argument(
        "--blank-penalty",
        type=float,
        default=0.0,
        help="subtracted from the blank logit before the log-softmax, in every method (0: none)",
    )
    parser.add_argument(
        "--lm-blank-penalty",
        type=float,
        default=None,
        help=f"the blank penalty of {LM_METHOD} alone (default: --blank-penalty)",
    )
    parser.add_argument(
        "--max-sym-per-frame",
        type=int,
        default=1,
        help="tokens emitted per encoder frame at most, in every method (results tagged _max_sym_<N> when "
        "not 1); letters come at up to ~0.9 per 40 ms frame on the synthetic corpus",
    )
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
        "--latency-utts",
        type=int,
        default=20,
        help="streaming models: measure latency on this many cuts of each set at batch size 1 (0: off); "
        "non-causal models are not measured",
    )
    parser.add_argument(
        "--suffix",
        default="",
        help="appended to every result's tag as _<suffix> (letters, digits, '.', '-', '_'), e.g. "
        "epoch-12-avg-3: decodes of several checkpoints side by side in --exp-dir (run.sh's tables read "
        "the unsuffixed ones)",
    )
    parser.add_argument(
        "--part",
        choices=("student", "teacher"),
        default=None,
        help="co-learning experiments (kd.mode: colearn): the model to decode (default: the student); "
        "the teacher's results are tagged teacher_<method>",
    )
    return parser


def check_lm_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Shallow fusion is the method LM_METHOD, and it needs both --lm-exp and --lm-scale."""
    if (args.lm_exp is None) != (args.lm_scale is None):
        parser.error("--lm-exp and --lm-scale go together: give both for shallow fusion, or neither")
    fused = LM_METHOD in args.methods
    if fused and args.lm_exp is None:
        parser.error(f"{LM_METHOD} needs an LM: give --lm-exp and --lm-scale")
    if not fused:
        given = [
            o
            for o, v in (
                ("--lm-exp", args.lm_exp),
                ("--lm-epoch", args.lm_epoch),
                ("--lm-blank-penalty", args.lm_blank_penalty),
            )
            if v is not None
        ]
        if given:
            parser.error(f"{' '.join(given)}: for shallow fusion, add {LM_METHOD} to --methods")


def method_tag(
    method: str,
    beam: int,
    lm_scale: float | None = None,
    blank_penalty: float = 0.0,
    max_sym_per_frame: int = 1,
) -> str:
    """The result-file name of a method: ``greedy_search``, ``modified_beam_search_beam_4``; with more than
    one token per frame ``_max_sym_<N>`` added (``greedy_search_max_sym_2``,
    ``modified_beam_search_beam_4_max_sym_2``), then with LM shallow fusion ``_lm_<scale>``
    (``modified_beam_search_beam_4_lm_0.3``), then with a blank penalty ``_bp_<penalty>``
    (``greedy_search_bp_1.5``, ``modified_beam_search_beam_4_max_sym_2_lm_0.3_bp_1.5``)."""
    tag = f"{method}_beam_{beam}" if method == "modified_beam_search" else method
    if max_sym_per_frame != 1:
        tag = f"{tag}_max_sym_{max_sym_per_frame}"
    if lm_scale is not None:
        tag = f"{tag}_lm_{lm_scale:g}"
    return tag if blank_penalty == 0.0 else f"{tag}_bp_{blank_penalty:g}"


def main() -> None:
    parser = get_parser()
    args = parser.parse_args()
    check_lm_args(parser, args)
    for option, value in (
        ("--blank-penalty", args.blank_penalty),
        ("--lm-blank-penalty", args.lm_blank_penalty),
    ):
        if value is not None and not math.isfinite(value):
            parser.error(f"{option} must be a finite number, got {value}")
    if args.max_sym_per_frame < 1:
        parser.error(f"--max-sym-per-frame must be at least 1, got {args.max_sym_per_frame}")
    if args.suffix and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.suffix):
        parser.error(f"--suffix {args.suffix!r}: use letters, digits, '.', '-' and '_' (it names files)")
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
    lm = None
    if args.lm_exp is not None:
        lm = load_lm(args.lm_exp, args.lm_epoch, trained.tokenizer, device)
    searches = [make_search(method, args, lm) for method in args.methods]
    data = AsrDataModule(DataConfig(max_duration=args.max_duration))
    measure = args.latency_utts > 0 and streaming_part(model) is not None
    if args.latency_utts > 0 and not measure:
        logging.info("latency not measured: the model does not stream (its encoder is not causal)")
    for cuts_path in args.cuts:
        if not cuts_path.is_file():
            raise FileNotFoundError(f"{cuts_path} not found; run the data stages of run.sh first")
        cuts = CutSet.from_file(cuts_path)
        name = set_name(cuts_path)
        latency = None
        if measure:
            measured = measure_latency(model, cuts, args.latency_utts, device=device)
            logging.info("%s latency: %s", name, measured.summary())
            latency = dataclasses.asdict(measured)
        decoded = decode_searches(
            model, data.eval_dataloader(cuts), trained.tokenizer, searches, device=device
        )
        for search, (results, stats) in zip(searches, decoded):
            rtf = stats["decode_seconds"] / max(stats["audio_seconds"], 1e-9)
            fused = search.lm is not None
            info = dict(model_info)
            if fused:
                info["lm"] = {
                    "checkpoint": str(lm_checkpoint(args.lm_exp, args.lm_epoch)),
                    "scale": args.lm_scale,
                }
            if search.blank_penalty != 0.0:
                info["blank_penalty"] = search.blank_penalty
            tag = method_tag(
                search.method,
                args.beam,
                args.lm_scale if fused else None,
                search.blank_penalty,
                args.max_sym_per_frame,
            )
            if args.decode_pass == "first":
                tag = f"first_pass_{tag}"
            if args.part == "teacher":
                tag = f"teacher_{tag}"
            if args.suffix:
                tag = f"{tag}_{args.suffix}"
            wer = save_results(args.exp_dir, name, tag, results, rtf=rtf, model_info=info, latency=latency)
            logging.info("%s %s: %s (RTF %.4f)", name, tag, wer, rtf)


def make_search(method: str, args: argparse.Namespace, lm: Any) -> Search:
    """The search of a --methods entry; LM_METHOD is modified beam search with ``lm`` fused."""
    if method != LM_METHOD:
        return Search(method, args.beam, args.max_sym_per_frame, blank_penalty=args.blank_penalty)
    blank_penalty = args.blank_penalty if args.lm_blank_penalty is None else args.lm_blank_penalty
    return Search(
        "modified_beam_search",
        args.beam,
        args.max_sym_per_frame,
        lm=lm,
        lm_scale=args.lm_scale,
        blank_penalty=blank_penalty,
    )


if __name__ == "__main__":
    main()
