"""Training-step time of config variants of one experiment, in one run: what a model change costs or saves.

    .venv/bin/python bench/step_variants.py --exp-dir exp/synth/teacher \
        --variant base= --variant mid2=model.encoder.block_downsampling=[1,2,2,2,2,1] \
        [--threads 2 1] [--cuts data/synth/fbank/synth_cuts_dev.jsonl.gz] [--max-batches 5] [--rounds 3]

Each variant is the experiment's config.yaml with its overrides (comma-separated ``key=value``; none after
``=`` for the config as it is), built with the same seed and random weights (a variant may not fit the
experiment's checkpoint). For each thread count, rounds alternate the variants on the same first batches of
``--cuts`` (bench/training.py: forward, losses, backward, AdamW step; one warm-up batch each), so a change
in a shared machine's load hits all alike. Each row gives the median seconds per step over rounds and its
ratio to the first variant's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name  # noqa: E402


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``name=key=value,key=value`` -> (name, overrides); splits on the commas outside brackets."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: write NAME=OVERRIDES (NAME= for none)")
    overrides, depth, current = [], 0, ""
    for char in rest:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            overrides.append(current)
            current = ""
        else:
            current += char
    if current:
        overrides.append(current)
    return name, overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp-dir", type=Path, required=True)
    parser.add_argument("--variant", type=parse_variant, action="append", required=True, help="repeatable")
    parser.add_argument("--cuts", type=Path, default=Path("data/synth/fbank/synth_cuts_dev.jsonl.gz"))
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--max-batches", type=int, default=5, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch
    from dropout import step_seconds
    from training import TrainingStep

    from kd.models import count_parameters

    steps = {
        name: TrainingStep(args.exp_dir, overrides=overrides, load_weights=False)
        for name, overrides in args.variant
    }
    batches = next(iter(steps.values())).batches(args.cuts, args.max_batches + 1)
    first = args.variant[0][0]
    print(f"# {cpu_name()}, torch {torch.__version__}; {args.exp_dir}, random weights")
    print(f"# {args.max_batches} batches of {args.cuts} per measurement, median of {args.rounds} rounds")
    print(f"\n| variant | overrides | params | threads | s/step | speed-up over {first} |")
    print("|---|---|---:|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                times[name].append(step_seconds(step, batches))
        base = statistics.median(times[first])
        for name, overrides in args.variant:
            median = statistics.median(times[name])
            params = count_parameters(steps[name].model)["total"] / 1e6
            print(
                f"| {name} | {' '.join(overrides) or '-'} | {params:.2f} M | {threads} | {median:.3f} "
                f"| {base / median:.2f} |"
            )


if __name__ == "__main__":
    main()
