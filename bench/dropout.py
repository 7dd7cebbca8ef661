"""What dropout costs a training step on the CPU: the step with the encoder's dropout at ``--dropout`` and at
0, in one run.

    .venv/bin/python bench/dropout.py --exp-dir exp/synth/teacher --exp-dir exp/synth/student_none \
        [--dropout 0.1] [--threads 2 1] [--cuts data/synth/fbank/synth_cuts_dev.jsonl.gz] [--max-batches 5] \
        [--rounds 3]

For each experiment (bench/training.py: its config and newest checkpoint, the first batches of ``--cuts`` at
its max_duration) and each thread count, rounds alternate the step with ``model.encoder.dropout`` set to
``--dropout`` and to 0 (the same weights; one warm-up batch each), so a change in a shared machine's load hits
both alike. Each row gives the median seconds per step over rounds and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name  # noqa: E402


def step_seconds(step, batches: list[dict]) -> float:
    """Mean seconds per training step over ``batches`` (after a warm-up step on the first)."""
    step(batches[0])
    start = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    return (time.perf_counter() - start) / (len(batches) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp-dir", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("--cuts", type=Path, default=Path("data/synth/fbank/synth_cuts_dev.jsonl.gz"))
    parser.add_argument("--dropout", type=float, default=0.1, help="the rate compared against none")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--max-batches", type=int, default=5, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not 0.0 < args.dropout < 1.0:
        parser.error(f"--dropout {args.dropout}: give a rate in (0, 1) to compare against no dropout")
    import torch
    from training import TrainingStep

    print(f"# {cpu_name()}, torch {torch.__version__}")
    print(f"# {args.max_batches} batches of {args.cuts} per measurement, median of {args.rounds} rounds")
    print(f"\n| experiment | threads | dropout {args.dropout} (s/step) | dropout 0 (s/step) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for exp_dir in args.exp_dir:
        steps = {
            rate: TrainingStep(exp_dir, overrides=[f"model.encoder.dropout={rate}"])
            for rate in (args.dropout, 0.0)
        }
        batches = steps[0.0].batches(args.cuts, args.max_batches + 1)
        for threads in args.threads:
            torch.set_num_threads(threads)
            times: dict[float, list[float]] = {rate: [] for rate in steps}
            for _ in range(args.rounds):
                for rate, step in steps.items():
                    times[rate].append(step_seconds(step, batches))
            on, off = (statistics.median(times[rate]) for rate in steps)
            print(f"| {exp_dir} | {threads} | {on:.3f} | {off:.3f} | {on / off:.2f} |")


if __name__ == "__main__":
    main()
