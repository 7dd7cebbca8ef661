"""Memory and time of reading an LM training text: token lists in memory against the token store on disk.

    .venv/bin/python bench/lm_text.py --text download/synth-default/lm-text.txt.gz \
        --bpe-model data/synth/lang_bpe_32/bpe.model [--copies 230]

The text is written ``--copies`` times into one temporary file (230 copies of the synthetic corpus' 8,670
sentences: 2 M lines, 91 MB). Each way runs in a process of its own, one after the other, and reports its
seconds and peak resident memory: ``lists`` reads every line and tokenises them into Python lists, as an LM
trainer holding its text in memory does; ``store`` is :func:`kd.lm.tokens.tokenize_text` (the memory-mapped
store that ``kd.bin.train_lm --train-text`` uses) followed by one epoch's :func:`kd.lm.data.batch_indices`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_name  # noqa: E402


def run_way(way: str, text: Path, bpe_model: Path, store_dir: Path) -> dict[str, float]:
    """Runs one way in this process; seconds and peak resident MiB."""
    from kd.data.tokenizer import Tokenizer
    from kd.lm.data import batch_indices
    from kd.lm.tokens import tokenize_text

    tokenizer = Tokenizer(bpe_model)
    start = time.perf_counter()
    if way == "lists":
        with open(text, encoding="utf-8") as f:
            ids = tokenizer.encode([line.strip() for line in f if line.strip()])
        sentences, tokens = len(ids), sum(len(s) for s in ids)
    else:
        store = tokenize_text(text, tokenizer, store_dir)
        batch_indices(store.lengths, max_tokens=4000, seed=1)
        sentences, tokens = len(store), len(store.tokens)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"sentences": sentences, "tokens": tokens, "seconds": seconds, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", type=Path, required=True, help="one sentence per line, plain or .gz")
    parser.add_argument("--bpe-model", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=230)
    parser.add_argument("--way", choices=("lists", "store"), help=argparse.SUPPRESS)
    parser.add_argument("--store-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(run_way(args.way, args.text, args.bpe_model, args.store_dir)))
        return

    opener = gzip.open if args.text.suffix == ".gz" else open
    with opener(args.text, "rt", encoding="utf-8") as f:
        once = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "text.txt"
        with open(big, "w", encoding="utf-8") as f:
            for _ in range(args.copies):
                f.write(once)
        print(f"{cpu_name()}; {args.copies} copies of {args.text}: {big.stat().st_size / 1e6:.0f} MB")
        results = {}
        for way in ("lists", "store"):
            cmd = [sys.executable, __file__, "--text", str(big), "--bpe-model", str(args.bpe_model)]
            cmd += ["--way", way, "--store-dir", str(Path(tmp) / "store")]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[way] = json.loads(out.strip().splitlines()[-1])
    print("| way | sentences | tokens | seconds | peak resident memory (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for way, r in results.items():
        print(f"| {way} | {r['sentences']:,} | {r['tokens']:,} | {r['seconds']:.1f} | {r['peak_mib']:.0f} |")
    print(f"memory ratio lists / store: {results['lists']['peak_mib'] / results['store']['peak_mib']:.1f}")


if __name__ == "__main__":
    main()
