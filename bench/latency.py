"""Streaming latency of several models, measured in one run: the fair comparison of first-pass latency.

    .venv/bin/python bench/latency.py --model teacher=exp/synth/student_cascaded_teacher \
        --model student=exp/synth/student_cascaded [--cuts data/synth/fbank/synth_cuts_test.jsonl.gz] \
        [--max-utts 20] [--rounds 5] [--threads 1]

Each model is a streaming experiment (a causal encoder, or a cascaded model whose first pass streams),
decoded with its last checkpoint. Rounds alternate the models on the same first ``--max-utts`` cuts, one at
a time at batch size 1 (kd.decode.latency, which also defines each number), so a change in a shared
machine's load hits all alike. Per model: the median over rounds of the compute per chunk, of the
first-pass latency and of the final (second-pass) latency, and the ratio of each median to the first
model's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_name  # noqa: E402


def parse_model(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--model {text!r}: write NAME=EXP_DIR")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=parse_model, action="append", required=True, help="repeatable")
    parser.add_argument("--cuts", type=Path, default=Path("data/synth/fbank/synth_cuts_test.jsonl.gz"))
    parser.add_argument("--max-utts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-sym-per-frame", type=int, default=2)
    args = parser.parse_args()
    import torch

    from kd.data.io import load_cuts
    from kd.decode.latency import measure_latency
    from kd.train.restore import load_trained_model

    torch.set_num_threads(args.threads)
    cuts = load_cuts(args.cuts)
    models = {name: load_trained_model(path).model for name, path in args.model}
    stats: dict[str, list] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            stats[name].append(
                measure_latency(model, cuts, args.max_utts, max_sym_per_frame=args.max_sym_per_frame)
            )

    print(f"# streaming latency, {args.max_utts} utterances of {args.cuts}, batch 1, {args.rounds} rounds")
    print(f"# {cpu_name()}, torch {torch.__version__}, torch.set_num_threads({args.threads})")
    header = (
        "compute per chunk (ms)",
        "ratio",
        "first-pass latency (ms)",
        "ratio",
        "final latency (ms)",
        "ratio",
    )
    print("| model | " + " | ".join(header) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base: dict[str, float] = {}
    for name, runs in stats.items():
        cells = []
        for field in ("compute_ms_mean", "first_pass_latency_ms", "final_latency_ms"):
            values = [getattr(s, field) for s in runs]
            if None in values:
                cells += ["-", "-"]
                continue
            median = statistics.median(values)
            base.setdefault(field, median)
            cells += [f"{median:.1f}", f"{median / base[field]:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
