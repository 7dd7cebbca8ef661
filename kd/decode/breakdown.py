"""Word and character error rates per speaker, or per any column of a LibriSpeech-style SPEAKERS.TXT.

A test set's WER hides where its errors are: on the synthetic corpus a few held-out voices (one engine's
recorded speaker) can hold a third of the errors. This module reads a decode's ``recogs-*.txt`` back and
splits its errors by group, like sclite's per-speaker report:

* the speaker of each cut comes from its CutSet's supervisions (LibriSpeech, Kaldi data dirs and the
  synthetic corpus all carry one);
* a group may be any column of a speakers table in LibriSpeech's ``SPEAKERS.TXT`` format (``|``-separated,
  ``;`` comments, the column names on the last comment line that starts with ``;ID``): LibriSpeech's
  ``SEX`` or ``SUBSET``, the synthetic corpus' ``ENGINE`` or ``FAMILY``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import kaldialign

from kd.data.errors import DataError
from kd.decode.scoring import Result, compute_wer

# LibriSpeech's own header (``;ID  |SEX| SUBSET           |MINUTES| NAME``), used when a table has none.
LIBRISPEECH_COLUMNS = ("ID", "SEX", "SUBSET", "MINUTES", "NAME")


def read_recogs(path: str | Path) -> list[Result]:
    """The (cut id, reference words, hypothesis words) of a ``recogs-*.txt`` written by
    :func:`kd.decode.scoring.recogs_text`, in file order.

    Raises:
        DataError: naming the file and line, if a line is not ``<cut id>:\\tref=[...]`` or ``hyp=[...]``,
            or a cut lacks one of the two.
    """
    path = Path(path)
    refs: dict[str, list[str]] = {}
    hyps: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cut_id, sep, rest = line.partition(":\t")
        side = rest[:4]
        if not sep or side not in ("ref=", "hyp="):
            raise DataError(
                f"{path}:{n}: not a recogs line ('<cut id>:\\tref=[...]' or 'hyp=[...]'): {line[:80]!r}; "
                "pass a recogs-<set>-<method>.txt written by python -m kd.bin.decode"
            )
        try:
            words = ast.literal_eval(rest[4:])
        except (ValueError, SyntaxError) as e:
            raise DataError(f"{path}:{n}: the word list does not parse ({e}): {line[:80]!r}") from e
        (refs if side == "ref=" else hyps)[cut_id] = list(words)
    unpaired = sorted(set(refs) ^ set(hyps))
    if unpaired:
        raise DataError(f"{path}: cut(s) with a ref= line but no hyp= line or the reverse: {unpaired[:5]}")
    return [(cut_id, refs[cut_id], hyps[cut_id]) for cut_id in refs]


def read_speakers_table(path: str | Path) -> dict[str, dict[str, str]]:
    """Speaker id -> {column name: value} from a LibriSpeech-style ``SPEAKERS.TXT``.

    The last field takes the rest of the line, so a NAME with ``|`` in it (LibriSpeech has one) stays whole.

    Raises:
        DataError: naming the file and line, if a row has fewer fields than the header.
    """
    path = Path(path)
    columns: Sequence[str] = LIBRISPEECH_COLUMNS
    table: dict[str, dict[str, str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith(";"):
            if line[1:].lstrip().startswith("ID"):
                columns = [c.strip() for c in line[1:].split("|")]
            continue
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("|", maxsplit=len(columns) - 1)]
        if len(fields) != len(columns):
            raise DataError(
                f"{path}:{n}: {len(fields)} fields where the header names {len(columns)} "
                f"({'|'.join(columns)}): fix the row or the ';ID' header line"
            )
        table[fields[0]] = dict(zip(columns, fields))
    return table


@dataclass(frozen=True)
class GroupErrors:
    """Errors of one group of utterances. ``wer`` and ``cer`` are percentages."""

    group: str
    num_utts: int
    num_words: int
    wer: float
    word_errors: int
    cer: float
    char_errors: int
    num_chars: int


def char_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Edit distance between the two word sequences spelt out as characters with single spaces."""
    return kaldialign.edit_distance(" ".join(ref), " ".join(hyp))["total"]


def group_errors(results: Iterable[Result], group_of: Mapping[str, str]) -> list[GroupErrors]:
    """WER and CER per group, groups sorted by name; ``group_of`` maps every cut id to its group.

    Raises:
        DataError: if a cut has no group.
    """
    by_group: dict[str, list[Result]] = {}
    for r in results:
        if r[0] not in group_of:
            raise DataError(f"cut {r[0]} has no group")
        by_group.setdefault(group_of[r[0]], []).append(r)
    out = []
    for group in sorted(by_group):
        rs = by_group[group]
        stats = compute_wer(rs)
        chars = sum(char_errors(ref, hyp) for _, ref, hyp in rs)
        num_chars = sum(len(" ".join(ref)) for _, ref, _ in rs)
        out.append(
            GroupErrors(
                group,
                len(rs),
                stats.num_ref_words,
                stats.wer,
                stats.errors,
                100.0 * chars / max(num_chars, 1),
                chars,
                num_chars,
            )
        )
    return out


def markdown_table(rows: Sequence[GroupErrors], key: str) -> str:
    """The groups as a Markdown table, with each group's share of all word errors, and a total row."""
    total_errors = sum(r.word_errors for r in rows)
    words = sum(r.num_words for r in rows)
    chars = sum(r.char_errors for r in rows)
    num_chars = sum(r.num_chars for r in rows)
    lines = [
        f"| {key} | utterances | words | WER (%) | CER (%) | share of word errors (%) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = 100.0 * r.word_errors / max(total_errors, 1)
        lines.append(
            f"| {r.group} | {r.num_utts} | {r.num_words} | {r.wer:.2f} | {r.cer:.2f} | {share:.1f} |"
        )
    lines.append(
        f"| all | {sum(r.num_utts for r in rows)} | {words} | {100.0 * total_errors / max(words, 1):.2f} "
        f"| {100.0 * chars / max(num_chars, 1):.2f} | 100.0 |"
    )
    return "\n".join(lines) + "\n"
