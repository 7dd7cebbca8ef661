"""Build the synthetic TTS corpus in LibriSpeech's layout.

    python -m kd.bin.make_synth_corpus --out download/synth --size default --seed 42 --nj 2

Rerunning resumes: finished utterances are kept, missing or broken ones are made again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
from pathlib import Path

from kd.data.synth.corpus import DEFAULT_SENTENCES, build_corpus
from kd.data.synth.plan import SIZES, SPLITS, NotEnoughTextError
from kd.data.synth.voices import NoVoicesError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="corpus root to write")
    p.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="default",
        help="preset: 'test' builds in seconds, 'default' about 3.4 h of audio, 'short' 2.4 h of short "
        "single sentences",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--nj", type=int, default=2, help="parallel worker processes")
    p.add_argument("--hours", type=float, default=None, help="total hours (split proportions kept)")
    p.add_argument("--num-speakers", type=int, default=None, help="total speakers (split proportions kept)")
    p.add_argument(
        "--max-vocab",
        type=int,
        default=None,
        help="use only sentences made of the N most common words (0 = no limit; default: preset)",
    )
    p.add_argument("--sentences", type=Path, default=DEFAULT_SENTENCES, help="sentence list")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    size = SIZES[args.size].scaled(hours=args.hours, num_speakers=args.num_speakers)
    if args.max_vocab is not None:
        size = dataclasses.replace(size, max_vocab=args.max_vocab or None)
    command = shlex.join(
        [
            Path(sys.executable).name,
            "-m",
            "kd.bin.make_synth_corpus",
            *(sys.argv[1:] if argv is None else argv),
        ]
    )
    try:
        res = build_corpus(
            args.out,
            size,
            args.seed,
            nj=args.nj,
            sentences_path=args.sentences,
            size_name=args.size,
            command=command,
            progress=not args.quiet,
        )
    except (NoVoicesError, NotEnoughTextError, FileNotFoundError, ValueError) as e:
        print(f"make_synth_corpus: error: {e}", file=sys.stderr)
        return 2
    info = json.loads((res.root / "corpus.json").read_text())
    print(f"synthetic corpus in {res.root} (seed {args.seed}, size {args.size})")
    print(f"{'split':<11} {'hours':>7} {'utts':>6} {'speakers':>8} {'families':>8}")
    for s in SPLITS:
        print(
            f"{s:<11} {res.seconds.get(s, 0) / 3600:7.3f} {res.utterances.get(s, 0):6d} "
            f"{info['speakers'][s]:8d} {len(info['families'][s]):8d}"
        )
    total_h = sum(res.seconds.values()) / 3600
    n_fam = len({f for fams in info["families"].values() for f in fams})
    print(
        f"total {total_h:.3f} h, {sum(res.utterances.values())} utterances, "
        f"{sum(info['speakers'].values())} speakers, {info['voices']} voices, {n_fam} families; "
        f"OOV vs train: " + ", ".join(f"{s} {100 * r:.1f}%" for s, r in info["oov_rate_vs_train"].items())
    )
    print(f"wall time {res.wall_seconds:.1f} s")
    if res.failed:
        print(
            f"make_synth_corpus: {len(res.failed)} utterances failed (see the log); rerun to retry",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
