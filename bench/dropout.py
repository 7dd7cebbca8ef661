"""Dropout on the CPU: torch's (bernoulli_ masks) against kd.models.dropout (int16 random bits), in one run.

    .venv/bin/python bench/dropout.py [--exp-dir exp/synth/teacher] [--cuts ...] [--threads 1 2] [--rounds 5]

Part one times forward + backward of each on the tensors the synthetic teacher drops out (a 60-s batch:
1,500 frames of the FFN's 768-dim hidden layer and of the 192-dim residual branches, and the attention
weights of 11 utterances of 140 frames with 4 heads). Part two, with ``--exp-dir``, times that experiment's
training step (bench/training.py) on the first batches of ``--cuts`` (default: the synthetic dev set) with
torch's dropout patched in and with the project's, rounds alternating. Each line gives the median over
rounds and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name  # noqa: E402

import kd.models.attention as attention  # noqa: E402
import kd.models.dropout as kd_dropout  # noqa: E402

SHAPES = {
    "FFN hidden (1500, 768)": (1500, 768),
    "residual (1500, 192)": (1500, 192),
    "attention (11, 4, 140, 140)": (11, 4, 140, 140),
}
P = 0.1


def torch_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training)


def torch_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, p: float
) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)


@contextmanager
def torch_dropout_patched():
    """Makes the encoder use torch's dropout and SDPA's attention dropout while the block runs."""
    saved = kd_dropout.dropout, attention.attend_with_dropout
    kd_dropout.dropout, attention.attend_with_dropout = torch_dropout, torch_attention
    try:
        yield
    finally:
        kd_dropout.dropout, attention.attend_with_dropout = saved


def seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def op_table(threads: int, rounds: int) -> None:
    torch.set_num_threads(threads)
    print(f"\n| tensor ({threads} thread{'s' * (threads > 1)}) | torch (ms) | kd (ms) | ratio |")
    print("|---|---:|---:|---:|")
    for name, shape in SHAPES.items():
        x = torch.randn(shape, requires_grad=True)
        grad = torch.randn(shape)
        times = {"torch": [], "kd": []}
        for _ in range(rounds):
            for label, fn in (("torch", torch_dropout), ("kd", kd_dropout.dropout)):
                times[label].append(seconds(lambda fn=fn, x=x, grad=grad: fn(x, P, True).backward(grad), 20))
        t, k = statistics.median(times["torch"]), statistics.median(times["kd"])
        print(f"| {name} | {t * 1e3:.2f} | {k * 1e3:.2f} | {t / k:.2f} |")


def step_table(exp_dir: Path, cuts: Path, threads: int, rounds: int, max_batches: int) -> None:
    from training import TrainingStep

    torch.set_num_threads(threads)
    step = TrainingStep(exp_dir)
    batches = step.batches(cuts, max_batches)
    step(batches[0])  # warm-up
    times = {"torch": [], "kd": []}
    for _ in range(rounds):
        for label in ("torch", "kd"):
            start = time.perf_counter()
            with torch_dropout_patched() if label == "torch" else nullcontext():
                for batch in batches:
                    step(batch)
            times[label].append((time.perf_counter() - start) / len(batches))
    t, k = statistics.median(times["torch"]), statistics.median(times["kd"])
    label = f"{exp_dir} training step, {threads} thread{'s' * (threads > 1)}"
    print(f"| {label} | {t:.3f} s | {k:.3f} s | {t / k:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exp-dir", type=Path, action="append", default=[], help="experiment (repeatable)")
    parser.add_argument("--cuts", type=Path, default=Path("data/synth/fbank/synth_cuts_dev.jsonl.gz"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-batches", type=int, default=6, help="batches per round of a training step")
    args = parser.parse_args()
    print(f"# {cpu_name()}, torch {torch.__version__}; dropout p = {P}, forward + backward")
    for threads in args.threads:
        op_table(threads, args.rounds)
    if args.exp_dir:
        print("\n| model | torch's dropout | kd's | ratio |")
        print("|---|---:|---:|---:|")
        for exp_dir in args.exp_dir:
            for threads in args.threads:
                step_table(exp_dir, args.cuts, threads, args.rounds, args.max_batches)


if __name__ == "__main__":
    main()
