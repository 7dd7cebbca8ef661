"""Writes lhotse recordings/supervisions manifests of a corpus.

    python -m kd.bin.prepare_manifests librispeech --corpus-dir DIR --parts train dev test --prefix synth \
        --output-dir data/synth/manifests [--unlabelled-parts unlabelled] [--nj 2]
    python -m kd.bin.prepare_manifests librilight --corpus-dir DIR --parts small --prefix librilight \
        --output-dir data/librilight/manifests
    python -m kd.bin.prepare_manifests kaldi --data-dir data/kaldi/train --part train --prefix mycorpus \
        --output-dir data/mycorpus/manifests

Output: <output-dir>/<prefix>_recordings_<part>.jsonl.gz and <prefix>_supervisions_<part>.jsonl.gz.
Parts whose manifests exist are skipped unless --force.
"""

from __future__ import annotations

import argparse

from kd.data.cli import run_main


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="corpus", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--prefix", required=True, help="corpus name that starts every manifest file name")
        p.add_argument("--output-dir", required=True, help="directory for the manifests")
        p.add_argument("--nj", type=int, default=1, help="parallel threads reading audio headers")
        p.add_argument("--force", action="store_true", help="rewrite manifests that exist")

    ls = sub.add_parser("librispeech", help="a corpus in LibriSpeech's layout (real or synthetic)")
    ls.add_argument("--corpus-dir", required=True, help="directory holding the part directories")
    ls.add_argument("--parts", nargs="+", required=True, help="transcribed parts (with .trans.txt files)")
    ls.add_argument("--unlabelled-parts", nargs="*", default=[], help="parts whose transcripts are withheld")
    common(ls)

    ll = sub.add_parser("librilight", help="Libri-Light unlabelled audio")
    ll.add_argument("--corpus-dir", required=True, help="directory holding small/ medium/ large/")
    ll.add_argument("--parts", nargs="+", required=True, help="subsets: small, medium, large")
    common(ll)

    kaldi = sub.add_parser("kaldi", help="a Kaldi data dir (wav.scp, text, [segments], [utt2spk])")
    kaldi.add_argument("--data-dir", required=True, help="the Kaldi data directory")
    kaldi.add_argument("--part", required=True, help="part name used in the manifest file names")
    common(kaldi)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    if args.corpus == "librispeech":
        from kd.data.librispeech import prepare_librispeech_manifests

        prepare_librispeech_manifests(
            args.corpus_dir,
            args.parts,
            args.output_dir,
            args.prefix,
            unlabelled_parts=args.unlabelled_parts,
            num_jobs=args.nj,
            force=args.force,
        )
    elif args.corpus == "librilight":
        from kd.data.librilight import prepare_librilight_manifests

        prepare_librilight_manifests(
            args.corpus_dir, args.parts, args.output_dir, args.prefix, num_jobs=args.nj, force=args.force
        )
    else:
        from kd.data.kaldi import prepare_kaldi_manifests

        prepare_kaldi_manifests(
            args.data_dir, args.part, args.output_dir, args.prefix, num_jobs=args.nj, force=args.force
        )


if __name__ == "__main__":
    run_main(main)
