"""Computes and stores 80-dim fbank features for the parts of a corpus.

    python -m kd.bin.compute_fbank --manifest-dir data/synth/manifests --prefix synth \
        --parts train dev test unlabelled --output-dir data/synth/fbank --nj 2

Output: <output-dir>/<prefix>_cuts_<part>.jsonl.gz (features under <output-dir>/<prefix>_feats_<part>/).
Parts whose cuts file exists are skipped unless --force.
"""

from __future__ import annotations

import argparse

from kd.data.cli import add_fbank_options, run_main


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--manifest-dir", required=True, help="directory of the recordings/supervisions manifests"
    )
    parser.add_argument("--prefix", required=True, help="corpus name that starts every manifest file name")
    parser.add_argument("--parts", nargs="+", required=True, help="parts to process")
    parser.add_argument("--output-dir", required=True, help="directory for the cuts and feature archives")
    add_fbank_options(parser, force_help="recompute parts whose cuts file exists")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    from kd.data.features import compute_fbank

    compute_fbank(
        args.manifest_dir,
        args.prefix,
        args.parts,
        args.output_dir,
        num_jobs=args.nj,
        extractor=args.extractor,
        force=args.force,
    )


if __name__ == "__main__":
    run_main(main)
