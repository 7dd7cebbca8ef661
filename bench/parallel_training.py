"""Training throughput of one job on all threads against several jobs side by side, in one run.

    .venv/bin/python bench/parallel_training.py --exp-dir exp/synth/student_none [--threads 2] [--jobs 2] \
        [--cuts data/synth/fbank/synth_cuts_dev.jsonl.gz] [--max-batches 10] [--rounds 3]

run.sh's stage 7 trains ``--student-jobs`` students at once, each on (cores / jobs) threads. This measures
why: the same training steps (forward, simple + pruned loss, backward, AdamW step; the experiment's config
and newest checkpoint, batches of ``--cuts`` at its max_duration, one warm-up batch) in one process on
``--threads`` threads, then in ``--jobs`` processes at once on threads / jobs each. Rounds alternate the two
set-ups, so a change in a shared machine's load hits them alike; the table gives each round's total
encoder frames per second and the median ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name  # noqa: E402


def train_frames(exp_dir: str, cuts_path: str, max_batches: int, threads: int) -> tuple[int, float]:
    """(encoder frames, seconds) of the timed training steps of one process on ``threads`` threads."""
    import torch
    from training import TrainingStep

    torch.set_num_threads(threads)
    step = TrainingStep(exp_dir)
    batches = step.batches(cuts_path, max_batches + 1)
    step(batches[0])  # warm-up
    frames, start = 0, time.perf_counter()
    for batch in batches[1:]:
        frames += step(batch)
    return frames, time.perf_counter() - start


def side_by_side(args: argparse.Namespace, jobs: int) -> float:
    """Total encoder frames per second of ``jobs`` processes started together on threads / jobs each."""
    threads = max(1, args.threads // jobs)
    work = (str(args.exp_dir), str(args.cuts), args.max_batches, threads)
    with mp.get_context("spawn").Pool(jobs) as pool:
        results = pool.starmap(train_frames, [work] * jobs)
    return sum(frames / seconds for frames, seconds in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp-dir", type=Path, required=True, help="experiment with config.yaml")
    parser.add_argument("--cuts", type=Path, default=Path("data/synth/fbank/synth_cuts_dev.jsonl.gz"))
    parser.add_argument("--threads", type=int, default=2, help="the single job's threads, split by the jobs")
    parser.add_argument("--jobs", type=int, default=2, help="processes side by side")
    parser.add_argument("--max-batches", type=int, default=10, help="timed batches per process")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.jobs < 2 or args.threads < 1 or args.rounds < 1:
        parser.error("--jobs must be >= 2, --threads and --rounds >= 1")

    import torch

    threads = max(1, args.threads // args.jobs)
    print(f"# {cpu_name()}, torch {torch.__version__}; {args.exp_dir}")
    one_job, jobs = f"1 job x {args.threads} threads", f"{args.jobs} jobs x {threads}"
    print(f"| round | {one_job} (frames/s) | {jobs} (frames/s) | ratio |")
    print("|---:|---:|---:|---:|")
    ratios = []
    for r in range(args.rounds):
        one = side_by_side(args, 1)
        many = side_by_side(args, args.jobs)
        ratios.append(many / one)
        print(f"| {r + 1} | {one:,.0f} | {many:,.0f} | {many / one:.2f} |")
    print(f"\nmedian ratio: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
