"""Adds speed-perturbed copies, with stored fbank features, to a part that compute_fbank has written.

    python -m kd.bin.perturb_speed --fbank-dir data/synth/fbank --prefix synth --part train \
        --factors 0.9 1.1 --nj 2

Output: <fbank-dir>/<prefix>_cuts_<part>_sp.jsonl.gz (the part's cuts, then a copy per factor; the copies'
features under <fbank-dir>/<prefix>_feats_<part>_sp/). An existing output is kept unless --force.
"""

from __future__ import annotations

import argparse

from kd.data.cli import add_fbank_options, run_main


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fbank-dir", required=True, help="directory of compute_fbank's cuts and features")
    parser.add_argument("--prefix", required=True, help="corpus name that starts every manifest file name")
    parser.add_argument("--part", required=True, help="the part to perturb (its cuts file must exist)")
    parser.add_argument(
        "--factors", nargs="+", type=float, default=[0.9, 1.1], help="speed factors of the copies"
    )
    add_fbank_options(parser, force_help="recompute an existing output")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    from kd.data.perturb import speed_perturb_part

    speed_perturb_part(
        args.fbank_dir,
        args.prefix,
        args.part,
        args.factors,
        num_jobs=args.nj,
        extractor=args.extractor,
        force=args.force,
    )


if __name__ == "__main__":
    run_main(main)
