"""RNN-T loss benchmark: forward+backward time and peak memory of the full loss vs simple+pruned, per backend.

    .venv/bin/python bench/rnnt_loss.py [--repeats 7] [--full-repeats 3] [--threads 2]

Sizes (the issue's): B=8, T=250, U=60, V=500, s_range=5, float32, reduction="sum", every utterance full
length. Cases, each timed as one loss call + backward() on leaf tensors:
    full           rnnt_loss(logits (B, T, U+1, V))
    simple         rnnt_loss_simple(lm (B, U+1, V), am (B, T, V), return_grad=True)
    pruned         rnnt_loss_pruned(logits (B, T, s_range, V), ranges)
    simple+pruned  simple (return_grad=True) -> get_rnnt_prune_ranges -> pruned; backward of the sum
                   (icefall's pipeline minus the joiner network)
Rows: kd.losses on every importable backend, and, when k2 or fast_rnnt imports, that package's own
functions ("<package> own code": k2's Python around the same compiled recursion).

Each case runs in two fresh processes, one timing it and one measuring its memory; in both, the
implementations take turns call by call (a change in a shared machine's load then hits them alike).
Time: median and min wall-clock over the repeats, after one warm-up call.
Memory: before each call the kernel's peak-RSS mark is reset (writing 5 to /proc/self/clear_refs); the
figure is VmHWM after the call minus VmRSS before it, the larger of two calls: the peak resident memory
the call added on top of its inputs (intermediates, saved tensors, input gradients). glibc's mmap
threshold is pinned to 64 KiB in this process, so freed tensors go back to the OS instead of staying in
malloc's heap, where a later call would reuse them unseen (not in the timing process: the page faults
that costs would distort the times). The inputs themselves are not counted; note the full loss also
needs its (B, T, U+1, V) logits (244 MiB here), which the pruned pipeline never builds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name, reset_peak_rss, status_kib  # noqa: E402

CASES = ("full", "simple", "pruned", "simple+pruned")
OWN_CODE = " own code"
B, T, U, V, S_RANGE = 8, 250, 60, 500, 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per case and implementation")
    parser.add_argument("--full-repeats", type=int, default=3, help="timed calls of the slow full loss")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    from kd.losses import available_backends

    implementations = available_backends()
    implementations += [name + OWN_CODE for name in implementations if name != "builtin"][:1]
    if args.worker:
        case, mode = args.worker
        repeats = args.full_repeats if case == "full" else args.repeats
        print(json.dumps(_measure(case, mode, implementations, repeats, args.threads)))
        return
    print(f"# RNN-T loss fwd+bwd, B={B} T={T} U={U} V={V} s_range={S_RANGE}, float32, reduction=sum")
    print(f"# {cpu_name()}, torch {torch.__version__}, torch.set_num_threads({args.threads})")
    calls = f"{args.repeats} timed calls per case, {args.full_repeats} for full"
    print(f"# implementations: {', '.join(implementations)}; {calls}")
    results: dict[tuple[str, str], dict] = {}
    for case in tqdm(CASES, desc="cases", leave=False):
        timed, measured = _run_worker(case, "time", args), _run_worker(case, "memory", args)
        for name in timed:
            results[name, case] = {**timed[name], **measured[name]}
    _print_tables(results, implementations)


def _run_worker(case: str, mode: str, args: argparse.Namespace) -> dict[str, dict]:
    env = dict(os.environ)
    if mode == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    command = [sys.executable, __file__, "--worker", case, mode, "--repeats", str(args.repeats)]
    command += ["--full-repeats", str(args.full_repeats), "--threads", str(args.threads)]
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"benchmark worker for {case} ({mode}) failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(case: str, mode: str, implementations: list[str], repeats: int, threads: int) -> dict[str, dict]:
    """Times `case` (mode "time") or measures its peak memory (mode "memory") for every implementation,
    which take turns call by call."""
    import torch

    from kd import losses

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    symbols = torch.randint(1, V, (B, U), generator=g)
    boundary = torch.tensor([[0, 0, U, T]] * B, dtype=torch.int64)
    leaves = {
        "full": [torch.randn(B, T, U + 1, V, generator=g)],
        "simple": [torch.randn(B, U + 1, V, generator=g), torch.randn(B, T, V, generator=g)],
        "pruned": [torch.randn(B, T, S_RANGE, V, generator=g)],
    }
    leaves["simple+pruned"] = leaves["simple"] + leaves["pruned"]
    tensors = [x.requires_grad_() for x in leaves[case]]
    # fixed ranges for the pruned-only case: a staircase through the lattice
    frame = torch.arange(T).view(1, T, 1)
    staircase = (frame * (U - S_RANGE + 1)) // T + torch.arange(S_RANGE)
    fixed_ranges = staircase.expand(B, T, S_RANGE).contiguous()
    common = dict(symbols=symbols, termination_symbol=0, boundary=boundary, reduction="sum")

    def call(lib) -> None:
        if case == "full":
            loss = lib.rnnt_loss(logits=tensors[0], **common)
        elif case == "simple":
            loss = lib.rnnt_loss_simple(lm=tensors[0], am=tensors[1], return_grad=True, **common)[0]
        elif case == "pruned":
            loss = lib.rnnt_loss_pruned(logits=tensors[0], ranges=fixed_ranges, **common)
        else:
            simple, (px_grad, py_grad) = lib.rnnt_loss_simple(
                lm=tensors[0], am=tensors[1], return_grad=True, **common
            )
            ranges = lib.get_rnnt_prune_ranges(
                px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=S_RANGE
            )
            loss = simple + lib.rnnt_loss_pruned(logits=tensors[2], ranges=ranges, **common)
        loss.backward()

    def run(name: str) -> None:
        if name.endswith(OWN_CODE):
            call(importlib.import_module(name.removesuffix(OWN_CODE)))
        else:
            losses.set_rnnt_backend(name)
            call(losses)

    samples: dict[str, list[float]] = {name: [] for name in implementations}
    for name in implementations:  # warm-up
        run(name)
    for _ in range(repeats if mode == "time" else 2):
        for name in implementations:
            for x in tensors:  # freed before the call (and the memory baseline): the new gradients count
                x.grad = None
            if mode == "time":
                start = time.perf_counter()
                run(name)
                samples[name].append(1e3 * (time.perf_counter() - start))
            else:
                base = reset_peak_rss()
                run(name)
                samples[name].append((status_kib("VmHWM") - base) / 1024)
    if mode == "time":
        return {name: {"ms_median": statistics.median(v), "ms_min": min(v)} for name, v in samples.items()}
    return {name: {"peak_mib": max(v)} for name, v in samples.items()}


def _print_tables(results: dict[tuple[str, str], dict], implementations: list[str]) -> None:
    print()
    print("| implementation | case | fwd+bwd median (ms) | min (ms) | peak memory (MiB) |")
    print("|---|---|---:|---:|---:|")
    for name in implementations:
        for case in CASES:
            r = results[name, case]
            print(f"| {name} | {case} | {r['ms_median']:.1f} | {r['ms_min']:.1f} | {r['peak_mib']:.1f} |")
    print()
    print("| ratio | time | memory |")
    print("|---|---:|---:|")

    def ratio(label: str, a: dict, b: dict) -> None:
        print(f"| {label} | {a['ms_median'] / b['ms_median']:.2f}x | {a['peak_mib'] / b['peak_mib']:.2f}x |")

    for name in implementations:
        ratio(f"{name}: full / (simple+pruned)", results[name, "full"], results[name, "simple+pruned"])
    for other in implementations:
        if other != "builtin":
            for case in CASES:
                ratio(f"{case}: builtin / {other}", results["builtin", case], results[other, case])


if __name__ == "__main__":
    main()
