"""WER of the teacher's hypotheses for unlabelled cuts (stage 6's `hyp` targets) against held-back text.

    python -m kd.bin.score_hyps --refs download/synth-default/unlabelled-transcripts \
        exp/synth/teacher/targets/synth_unlabelled_targets.jsonl.gz \
        exp/synth/teacher/targets_lm/synth_unlabelled_targets.jsonl.gz

How good are the pseudo-labels a student learns from, and does fusing the LM into the teacher's search make
them better (METHODS.md (c))? The synthetic corpus keeps the transcripts of its unlabelled split aside for
this (``<corpus>/unlabelled-transcripts/``); for other corpora, any transcripts of the same utterance ids.
``--refs`` is a Kaldi ``text`` file or a directory searched for LibriSpeech-style ``*.trans.txt`` files
(both are ``<utterance id> <words>`` lines). One line per targets cuts file: cuts scored and Kaldi's WER line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kd.data.cli import run_main
from kd.data.errors import DataError
from kd.data.kaldi import read_table
from kd.decode.scoring import Result, WerStats, compute_wer


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--refs", required=True, help="Kaldi text file, or a directory of *.trans.txt files")
    parser.add_argument(
        "targets", nargs="+", help="targets cuts of unlabelled parts (`hyp` targets): <name>_targets.jsonl.gz"
    )
    return parser


def read_references(path: str | Path) -> dict[str, list[str]]:
    """Utterance id -> reference words, from a Kaldi ``text`` file or every ``*.trans.txt`` under a directory.

    Raises:
        DataError: no such file or directory, no transcript files in the directory, or a malformed line.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.trans.txt"))
        if not files:
            raise DataError(f"{path}: no *.trans.txt files; pass their directory or a Kaldi text file")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such file or directory (--refs)")
    refs: dict[str, list[str]] = {}
    for f in files:
        for key, line in read_table(f).items():
            if key in refs:
                raise DataError(f"{line.where}: utterance {key!r} has a transcript in another file too")
            refs[key] = line.value.split()
    return refs


def score_hypotheses(targets: str | Path, refs: dict[str, list[str]]) -> WerStats:
    """Scores the stored hypothesis of every cut of ``targets`` against ``refs``.

    Raises:
        DataError: a cut has no stored hypothesis (labelled cuts, or targets made without `hyp`) or no
            reference.
    """
    from kd.data.io import load_cuts
    from kd.targets.storage import cut_meta

    results: list[Result] = []
    for cut in load_cuts(targets):
        hyp = cut_meta(cut).get("hyp")
        if hyp is None:
            raise DataError(
                f"{targets}: cut {cut.id} has no stored hypothesis; score the targets of an unlabelled part "
                "made with `--types ... hyp`"
            )
        if cut.id not in refs:
            raise DataError(f"{targets}: cut {cut.id} has no reference transcript in --refs")
        results.append((cut.id, refs[cut.id], hyp["text"].split()))
    return compute_wer(results)


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    refs = read_references(args.refs)
    for targets in args.targets:
        stats = score_hypotheses(targets, refs)
        print(f"{targets}: {stats.num_utts} cuts, {stats.summary()}")


if __name__ == "__main__":
    run_main(main)
