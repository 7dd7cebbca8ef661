"""Generates a trained teacher's distillation targets for a CutSet, in resumable shards.

    python -m kd.bin.generate_targets --exp-dir exp/synth/teacher --epoch 6 --avg 2 \\
        --cuts data/synth/fbank/synth_cuts_train.jsonl.gz --out-dir data/synth/targets \\
        --types pruned pxpy one_best hyp enc_logits --topk 8 --prune-range 5 --nj 2 --device cpu
    torchrun --nproc-per-node 4 -m kd.bin.generate_targets ...      # one shard per rank

--lm-exp exp/synth/lm --lm-scale 0.3 fuses an LSTM LM (python -m kd.bin.train_lm) into the beam search that
gives the hypotheses (the hyp targets, and the labels of the lattice targets of unlabelled cuts); the
manifest records it, and a run with another LM or none refuses to write into the same --out-dir.
--blank-penalty 1.5 subtracts 1.5 from the teacher's blank logit in that search only (it offsets the LM's
cost of every token); the stored log-probs stay the teacher's own posteriors. The manifest records it too.

Writes <out-dir>/<name>_targets.jsonl.gz (the cuts with their targets attached; <name> is the cuts file's
name without "_cuts" and ".jsonl.gz", e.g. synth_train) and <out-dir>/<name>_targets.json (the targets
manifest: teacher, tokenizer, settings, statistics), and prints the compute time and bytes per hour of audio
of each target type. Rerunning the same command finishes a killed run, redoing only its unfinished shards.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

from kd.logging_utils import setup_logging
from kd.targets.config import TARGET_TYPES
from kd.targets.generate import (
    LmSpec,
    TeacherSpec,
    default_config,
    generate_targets,
    generate_targets_of_rank,
)
from kd.targets.manifest import manifest_path
from kd.train.distributed import cleanup_distributed, setup_distributed
from kd.train.trainer import resolve_device


def targets_name(cuts_path: Path) -> str:
    """``data/synth/fbank/synth_cuts_train.jsonl.gz`` -> ``synth_train``."""
    stem = cuts_path.name.split(".")[0]
    return stem.replace("_cuts_", "_").removeprefix("cuts_").removesuffix("_cuts")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp-dir", type=Path, required=True, help="the teacher's experiment directory")
    parser.add_argument("--epoch", type=int, default=None, help="last epoch to use (default: the newest)")
    parser.add_argument("--avg", type=int, default=1, help="number of epoch checkpoints to average")
    parser.add_argument("--bpe-model", default=None, help="BPE model (default: the teacher's)")
    parser.add_argument("--cuts", type=Path, required=True, help="CutSet with features")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--name", default=None, help="output name (default: from the cuts file name)")
    parser.add_argument("--types", nargs="+", default=list(TARGET_TYPES), choices=TARGET_TYPES)
    parser.add_argument("--topk", type=int, default=8, help="teacher classes kept per node or frame")
    parser.add_argument("--prune-range", type=int, default=None, help="s_range (default: the teacher's)")
    parser.add_argument(
        "--simple-lm-scale",
        type=float,
        default=None,
        help="simple-loss smoothing behind the prune ranges (default: the teacher's loss.lm_scale)",
    )
    parser.add_argument(
        "--simple-am-scale",
        type=float,
        default=None,
        help="simple-loss smoothing behind the prune ranges (default: the teacher's loss.am_scale)",
    )
    parser.add_argument("--beam", type=int, default=4, help="beam of the hypothesis search")
    parser.add_argument(
        "--lm-exp", type=Path, default=None, help="LM experiment dir fused into the hypothesis search"
    )
    parser.add_argument("--lm-epoch", type=int, default=None, help="the LM's epoch (default: the newest)")
    parser.add_argument(
        "--lm-scale", type=float, default=None, help="weight of the LM's log-probabilities in the search"
    )
    parser.add_argument(
        "--blank-penalty",
        type=float,
        default=0.0,
        help="subtracted from the blank logit in the hypothesis search only, not in the stored targets "
        "(0: none)",
    )
    parser.add_argument(
        "--max-sym-per-frame",
        type=int,
        default=1,
        help="symbols per encoder frame at most in the hypothesis search, if one is needed (2 for letters at "
        "40 ms frames)",
    )
    parser.add_argument("--nj", type=int, default=1, help="shards, run by as many processes")
    parser.add_argument("--max-duration", type=float, default=200.0, help="seconds of audio per batch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-threads", type=int, default=0, help="torch threads on CPU (0: default)")
    parser.add_argument("--force", action="store_true", help="discard a previous run's output in --out-dir")
    return parser


def main() -> None:
    parser = get_parser()
    args = parser.parse_args()
    if (args.lm_exp is None) != (args.lm_scale is None):
        parser.error("--lm-exp and --lm-scale go together: give both for shallow fusion, or neither")
    if args.lm_exp is None and args.lm_epoch is not None:
        parser.error("--lm-epoch needs --lm-exp")
    setup_logging(args.out_dir / "log", "generate_targets")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    name = args.name or targets_name(args.cuts)
    spec = TeacherSpec(str(args.exp_dir), args.epoch, args.avg, args.bpe_model)
    trained = spec.load(device)
    config = default_config(
        trained[0],
        types=args.types,
        topk=args.topk,
        prune_range=args.prune_range,
        lm_scale=args.simple_lm_scale,
        am_scale=args.simple_am_scale,
        beam=args.beam,
        blank_penalty=args.blank_penalty,
        max_sym_per_frame=args.max_sym_per_frame,
    )
    searched = "hyp" in config.types or config.needs_tokens
    if args.lm_exp is not None and not searched:
        parser.error(f"--lm-exp: the types {config.types} search no hypotheses, so an LM has nothing to do")
    if args.blank_penalty != 0.0 and not searched:
        parser.error(f"--blank-penalty: the types {config.types} search no hypotheses; drop it")
    lm = LmSpec(str(args.lm_exp), args.lm_scale, args.lm_epoch) if args.lm_exp is not None else None
    common = {"device": device, "max_duration": args.max_duration, "force": args.force}
    if world_size == 1:
        manifest = generate_targets(
            spec,
            args.cuts,
            args.out_dir,
            name,
            config,
            num_shards=args.nj,
            num_workers=args.nj,
            trained=trained,
            lm=lm,
            **common,
        )
    else:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        info = setup_distributed(device)
        manifest = generate_targets_of_rank(
            trained,
            args.cuts,
            args.out_dir,
            name,
            config,
            info.rank,
            world_size,
            dist.barrier,
            lm=lm,
            **common,
        )
        cleanup_distributed()
    if manifest is not None:
        logging.info("targets manifest: %s", manifest_path(args.out_dir, name))


if __name__ == "__main__":
    main()
