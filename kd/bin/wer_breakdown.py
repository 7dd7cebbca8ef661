"""WER and CER of a decode per speaker, or per a column of the corpus' speakers table (Markdown on stdout).

    python -m kd.bin.wer_breakdown --cuts data/synth/fbank/synth_cuts_test.jsonl.gz \
        --speakers download/synth-default/SPEAKERS.txt --by FAMILY \
        exp/synth/teacher/recogs-test-greedy_search_max_sym_2.txt

``--cuts`` gives each cut's speaker (its supervision's); ``--by`` groups by the speaker itself (``speaker``,
the default) or by a column of ``--speakers``, a LibriSpeech-style SPEAKERS.TXT (LibriSpeech: SEX, SUBSET;
the synthetic corpus also ENGINE, VOICE, FAMILY). One table per recogs file, with each group's share of the
word errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kd.data.cli import run_main
from kd.data.errors import DataError
from kd.decode.breakdown import group_errors, markdown_table, read_recogs, read_speakers_table


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cuts", required=True, help="the decoded set's CutSet (for each cut's speaker)")
    parser.add_argument(
        "--speakers", help="LibriSpeech-style SPEAKERS.TXT (needed for --by other than speaker)"
    )
    parser.add_argument("--by", default="speaker", help="speaker, or a column name of --speakers")
    parser.add_argument(
        "recogs", nargs="+", help="recogs-<set>-<method>.txt files of python -m kd.bin.decode"
    )
    return parser


def speaker_of_cuts(cuts_path: str | Path) -> dict[str, str]:
    """Cut id -> the speaker of its first supervision.

    Raises:
        DataError: a cut without a supervision or without a speaker.
    """
    from kd.data.io import load_cuts

    out = {}
    for cut in load_cuts(cuts_path):
        if not cut.supervisions or cut.supervisions[0].speaker is None:
            raise DataError(
                f"{cuts_path}: cut {cut.id} has no speaker in its supervision; pass the manifests of a "
                "corpus with speakers (LibriSpeech, a Kaldi dir with utt2spk, the synthetic one)"
            )
        out[cut.id] = str(cut.supervisions[0].speaker)
    return out


def groups(cuts_path: str | Path, speakers_path: str | Path | None, by: str) -> dict[str, str]:
    """Cut id -> its group: the speaker, or the speaker's value in column ``by`` of the speakers table.

    Raises:
        DataError: ``by`` needs a table that was not given or is not one of its columns, or a speaker is
            not in the table.
    """
    speaker_of = speaker_of_cuts(cuts_path)
    if by == "speaker":
        return speaker_of
    if speakers_path is None:
        raise DataError(f"--by {by} needs --speakers (the corpus' SPEAKERS.TXT)")
    table = read_speakers_table(speakers_path)
    out = {}
    for cut_id, spk in speaker_of.items():
        if spk not in table:
            raise DataError(f"{speakers_path}: no row for speaker {spk} (of cut {cut_id} in {cuts_path})")
        if by not in table[spk]:
            raise DataError(f"{speakers_path}: no column {by!r}; its columns: {', '.join(table[spk])}")
        out[cut_id] = table[spk][by]
    return out


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    group_of = groups(args.cuts, args.speakers, args.by)
    for path in args.recogs:
        results = read_recogs(path)
        missing = [cut_id for cut_id, _, _ in results if cut_id not in group_of]
        if missing:
            raise DataError(
                f"{path}: {len(missing)} cut(s) not in --cuts {args.cuts}, e.g. {missing[0]}: "
                "pass the CutSet of the set this file decoded"
            )
        print(f"{path}\n")
        print(markdown_table(group_errors(results, group_of), args.by))


if __name__ == "__main__":
    run_main(main)
