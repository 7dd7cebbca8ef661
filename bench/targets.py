"""Teacher-target benchmark: bytes on disk and generation time per hour of audio for each target type, against
the naive full-vocabulary lattices.

    .venv/bin/python bench/targets.py [--cuts data/synth/fbank/synth_cuts_dev.jsonl.gz]
        [--exp-dir exp/synth/teacher] [--topk 8] [--prune-range 5] [--threads 1] [--max-cuts N]

The teacher is the newest checkpoint of --exp-dir; without one, a randomly initialised model of --config
(default egs/synth/conf/teacher.yaml) with --bpe-model, saved to a temporary experiment directory (the sizes
do not depend on the weights, the times hardly). One run of kd.targets.generate_targets computes every type
for the cuts into a temporary directory (one shard, this process) and the tables come from its statistics:

    bytes      measured: the type's array archives (JSON text for hyp; "meta" is the per-cut records)
    seconds    measured wall-clock: each type's own work; "encoder" (shared by all types) and "search"
               (beam search: the hyp type, and the labels of unlabelled cuts) are listed apart
    naive      computed sizes, never stored: the full-vocabulary full lattice, T * (U+1) * V values per
               utterance, and the full-vocabulary pruned lattice, T * S * V values plus its (T, S) int64
               ranges, each at fp16 and at fp32 (what the joiner outputs); T, U per cut from the targets

The goal checked at the end: ``pruned`` at most 1/20 of the full-vocabulary pruned lattice.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lhotse import CutSet  # noqa: E402

from bench.machine import cpu_name  # noqa: E402
from kd.config import load_yaml, save_yaml  # noqa: E402
from kd.data.tokenizer import Tokenizer  # noqa: E402
from kd.models import build_model  # noqa: E402
from kd.targets import TARGET_TYPES, TargetConfig, TeacherSpec, generate_targets  # noqa: E402
from kd.targets.manifest import targets_cuts_path  # noqa: E402
from kd.train.checkpoint import epoch_checkpoints, save_checkpoint  # noqa: E402
from kd.train.config import TrainConfig  # noqa: E402

GOAL = 20  # pruned targets at most 1/GOAL of the full-vocabulary pruned lattice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=Path, default=Path("data/synth/fbank/synth_cuts_dev.jsonl.gz"))
    parser.add_argument("--exp-dir", type=Path, default=Path("exp/synth/teacher"))
    parser.add_argument("--config", type=Path, default=Path("egs/synth/conf/teacher.yaml"))
    parser.add_argument("--bpe-model", type=Path, default=Path("data/synth/lang_bpe_256/bpe.model"))
    parser.add_argument("--topk", type=int, default=8)
    parser.add_argument("--prune-range", type=int, default=5)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--max-duration", type=float, default=200.0)
    parser.add_argument("--max-cuts", type=int, default=0, help="use the first N cuts only (0: all)")
    # the per-utterance and per-step work is many small ops, which a second thread slows down on a shared
    # 2-CPU machine (about 5x here); generation scales across shards (--nj) instead
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
    if not args.cuts.is_file():
        raise SystemExit(f"{args.cuts} not found: run the data stages of run.sh (or pass --cuts)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cuts = args.cuts
        if args.max_cuts:
            cuts = tmp / "cuts.jsonl.gz"
            CutSet.from_file(args.cuts).subset(first=args.max_cuts).to_file(cuts)
        exp_dir, teacher = _teacher(args, tmp)
        config = TargetConfig(
            types=list(TARGET_TYPES), topk=args.topk, prune_range=args.prune_range, beam=args.beam
        )
        start = time.perf_counter()
        manifest = generate_targets(
            TeacherSpec(str(exp_dir)),
            cuts,
            tmp / "targets",
            "bench",
            config,
            device=args.device,
            max_duration=args.max_duration,
        )
        wall = time.perf_counter() - start
        lattices = _lattice_sizes(targets_cuts_path(tmp / "targets", "bench"), args.prune_range)
    stats = manifest.stats
    hours = stats.audio_seconds / 3600
    vocab = manifest.tokenizer.vocab_size
    skipped = len(stats.skipped)
    print(f"# teacher targets of {args.cuts}: {stats.num_cuts} cuts, {hours:.4f} h, {skipped} skipped")
    settings = f"vocabulary {vocab}, k={args.topk}, s_range={args.prune_range}, beam={args.beam}"
    print(f"# teacher: {teacher}; {settings}")
    print(f"# {cpu_name()}, torch {torch.__version__}, torch.set_num_threads({args.threads}), {args.device}")
    print(f"# one generation run: {wall:.1f} s wall-clock (teacher loading and I/O included)\n")
    naive = {
        "full-vocabulary full lattice, fp16": lattices["full"] * vocab * 2,
        "full-vocabulary full lattice, fp32": lattices["full"] * vocab * 4,
        "full-vocabulary pruned lattice, fp16": lattices["pruned"] * (vocab * 2 + 8),
        "full-vocabulary pruned lattice, fp32": lattices["pruned"] * (vocab * 4 + 8),
    }
    pruned_naive = naive["full-vocabulary pruned lattice, fp16"]
    # (row, bytes, seconds); the beam search is the hyp type's work (and gives unlabelled cuts their labels)
    rows = [
        (t, stats.bytes.get(t), stats.seconds.get(t)) for t in ("pruned", "pxpy", "one_best", "enc_logits")
    ]
    rows += [
        ("hyp (beam search)", stats.bytes.get("hyp"), stats.seconds.get("search")),
        ("per-cut records (meta)", stats.bytes.get("meta"), None),
        ("encoder (shared by all types)", None, stats.seconds.get("encoder")),
    ]
    rows += [(f"{name} (naive, computed)", nbytes, None) for name, nbytes in naive.items()]
    print("| target | MB per h of audio | generation s per h of audio | % of fp16 pruned lattice |")
    print("|---|---:|---:|---:|")
    for name, nbytes, seconds in rows:
        cells = [
            name,
            f"{nbytes / hours / 1e6:.2f}" if nbytes is not None else "-",
            f"{seconds / hours:.1f}" if seconds is not None else "-",
            f"{100 * nbytes / pruned_naive:.2f}" if nbytes is not None else "-",
        ]
        print("| " + " | ".join(cells) + " |")
    pruned = stats.bytes["pruned"]
    print()
    for name in ("full-vocabulary pruned lattice, fp16", "full-vocabulary pruned lattice, fp32"):
        verdict = "meets" if pruned * GOAL <= naive[name] else "misses"
        print(f"pruned / {name}: 1/{naive[name] / pruned:.1f} ({verdict} the 1/{GOAL} goal)")
    full16 = naive["full-vocabulary full lattice, fp16"]
    print(f"pxpy / full-vocabulary full lattice, fp16: 1/{full16 / stats.bytes['pxpy']:.1f}")
    per_node = pruned / lattices["pruned"]
    print(f"pruned bytes per lattice node: {per_node:.2f} (fp16 full vocabulary: {vocab * 2 + 8})")


def _teacher(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """The teacher's experiment directory and a description of it."""
    found = epoch_checkpoints(args.exp_dir) if args.exp_dir.is_dir() else {}
    if found:
        return args.exp_dir, f"{args.exp_dir} epoch {max(found)} (trained)"
    config = load_yaml(TrainConfig, args.config, [f"paths.bpe_model={args.bpe_model}"])
    torch.manual_seed(0)
    model = build_model(config.model, Tokenizer(args.bpe_model).vocab_size)
    exp_dir = tmp / "random_teacher"
    save_yaml(config, exp_dir / "config.yaml")
    save_checkpoint(exp_dir / "epoch-1.pt", {"model": model.state_dict(), "global_step": 0})
    return exp_dir, f"randomly initialised {args.config} (no checkpoint in {args.exp_dir})"


def _lattice_sizes(cuts_path: Path, prune_range: int) -> dict[str, int]:
    """Nodes of the full lattices (sum of T * (U+1)) and of the pruned ones (sum of T * S) of the cuts."""
    full = pruned = 0
    for cut in CutSet.from_file(cuts_path):
        frames, tokens = cut.kd_targets["frames"], len(cut.kd_targets["tokens"])
        full += frames * (tokens + 1)
        pruned += frames * prune_range
    return {"full": full, "pruned": pruned}


if __name__ == "__main__":
    main()
