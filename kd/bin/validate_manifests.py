"""Checks manifests before later stages trust them; exits with status 1 listing every problem.

    python -m kd.bin.validate_manifests --cuts data/synth/fbank/synth_cuts_train.jsonl.gz ...
    python -m kd.bin.validate_manifests --manifest-dir data/synth/manifests --prefix synth --parts train dev
    ... [--bpe-model data/synth/lang_bpe_32/bpe.model]   # also check transcripts against the tokenizer

Checks: audio files exist, 16 kHz, durations positive and consistent, supervisions inside their
recordings, no empty transcripts (unlabelled supervisions have no text at all), 80-dim features with a
10 ms shift whose archives exist, and, with --bpe-model, no characters outside the tokenizer.
"""

from __future__ import annotations

import argparse
import logging
import sys

from kd.data.cli import run_main

log = logging.getLogger("kd.bin.validate_manifests")
_SHOWN = 20


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cuts", nargs="*", default=[], help="cuts manifests to check")
    parser.add_argument("--manifest-dir", help="directory of recordings/supervisions manifests to check")
    parser.add_argument("--prefix", help="with --manifest-dir: the corpus name of the manifest files")
    parser.add_argument("--parts", nargs="*", default=[], help="with --manifest-dir: parts to check")
    parser.add_argument("--bpe-model", help="also check that every transcript is representable by this model")
    parser.add_argument(
        "--skip-audio-check",
        action="store_true",
        help="do not require the audio files of cuts (e.g. deleted after feature extraction)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not args.cuts and not args.parts:
        parser.error("nothing to check: give --cuts and/or --manifest-dir, --prefix and --parts")
    if args.parts and not (args.manifest_dir and args.prefix):
        parser.error("--parts needs --manifest-dir and --prefix")
    from kd.data.io import load_cuts, load_manifests, manifest_path
    from kd.data.tokenizer import Tokenizer
    from kd.data.validate import check_cuts, check_recordings, check_supervisions

    tokenizer = Tokenizer(args.bpe_model) if args.bpe_model else None
    problems = []
    for part in args.parts:
        recordings, supervisions = load_manifests(args.manifest_dir, args.prefix, part)
        problems += check_recordings(
            recordings, str(manifest_path(args.manifest_dir, args.prefix, "recordings", part))
        )
        where = str(manifest_path(args.manifest_dir, args.prefix, "supervisions", part))
        problems += check_supervisions(supervisions, recordings, where, tokenizer)
    for path in args.cuts:
        problems += check_cuts(load_cuts(path), str(path), tokenizer, check_audio=not args.skip_audio_check)
    checked = len(args.parts) + len(args.cuts)
    if problems:
        for line in problems[:_SHOWN]:
            print(line, file=sys.stderr)
        if len(problems) > _SHOWN:
            print(f"... and {len(problems) - _SHOWN} more", file=sys.stderr)
        print(f"error: {len(problems)} problem(s) in {checked} manifest(s)", file=sys.stderr)
        sys.exit(1)
    log.info("%d manifest(s) OK", checked)


if __name__ == "__main__":
    run_main(main)
