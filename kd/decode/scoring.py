"""Word error rate with kaldialign, and icefall-style result files per test set and decoding method.

For set S and method M an experiment directory receives:
  recogs-S-M.txt   reference and hypothesis words per utterance
  errs-S-M.txt     the WER line, error counts, per-utterance alignments and per-word error counts
  wer-S-M.txt      one summary line
  wer-S-M.json     the numbers, the decode real-time factor, model facts and, for streaming models, the
                   measured latency (``kd.decode.latency``), for ``kd.bin.report``
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kaldialign

from kd.decode.atomic import write_text_atomic

# One decoded utterance: (cut id, reference words, hypothesis words).
Result = tuple[str, list[str], list[str]]

_EPS = -1  # alignment gap; words are aligned as integer ids, so no word can collide with it


@dataclass
class WerStats:
    ins: int
    dels: int
    subs: int
    num_ref_words: int
    num_utts: int

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def wer(self) -> float:
        """Word error rate in percent."""
        return 100.0 * self.errors / self.num_ref_words

    def summary(self) -> str:
        """Kaldi's compute-wer line."""
        return (
            f"%WER {self.wer:.2f} [ {self.errors} / {self.num_ref_words}, "
            f"{self.ins} ins, {self.dels} del, {self.subs} sub ]"
        )


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """Minimum-edit-distance alignment; ``None`` on the reference side is an insertion, on the hypothesis
    side a deletion, and a pair of different words a substitution."""
    ids: dict[str, int] = {}
    words: list[str] = []
    for w in (*ref, *hyp):
        if w not in ids:
            ids[w] = len(words)
            words.append(w)
    pairs = kaldialign.align([ids[w] for w in ref], [ids[w] for w in hyp], _EPS)
    return [(None if r == _EPS else words[r], None if h == _EPS else words[h]) for r, h in pairs]


def compute_wer(results: Sequence[Result]) -> WerStats:
    """Counts insertions, deletions and substitutions over all utterances.

    Raises:
        ValueError: if the references hold no words (a WER is undefined).
    """
    ins = dels = subs = 0
    for _, ref, hyp in results:
        for r, h in align(ref, hyp):
            ins += r is None
            dels += h is None
            subs += r is not None and h is not None and r != h
    num_ref_words = sum(len(ref) for _, ref, _ in results)
    if num_ref_words == 0:
        raise ValueError(
            f"the {len(results)} decoded utterance(s) have no reference words, so the WER is undefined; "
            "check that the test set's supervisions carry text"
        )
    return WerStats(ins, dels, subs, num_ref_words, len(results))


def recogs_text(results: Sequence[Result]) -> str:
    """icefall's recogs file: a ``ref=`` and a ``hyp=`` line per utterance, sorted by cut id."""
    lines = []
    for cut_id, ref, hyp in sorted(results, key=lambda r: r[0]):
        lines.append(f"{cut_id}:\tref={ref}")
        lines.append(f"{cut_id}:\thyp={hyp}")
    return "\n".join(lines) + "\n"


def error_stats_text(results: Sequence[Result], stats: WerStats) -> str:
    """icefall's errs file: totals, per-utterance alignments (``(ref->hyp)``, ``*`` for a gap), counts of
    each substitution, deletion and insertion, and per-word statistics sorted by errors."""
    subs: Counter[tuple[str, str]] = Counter()
    dels: Counter[str] = Counter()
    ins: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    ref_errors: Counter[str] = Counter()  # the word, in the reference, was substituted or deleted
    hyp_errors: Counter[str] = Counter()  # the word, in the hypothesis, replaced or was inserted
    details = []
    for cut_id, ref, hyp in sorted(results, key=lambda r: r[0]):
        shown = []
        for r, h in align(ref, hyp):
            if r == h:
                correct[r] += 1
                shown.append(r)
                continue
            if r is None:
                ins[h] += 1
                hyp_errors[h] += 1
            elif h is None:
                dels[r] += 1
                ref_errors[r] += 1
            else:
                subs[(r, h)] += 1
                ref_errors[r] += 1
                hyp_errors[h] += 1
            shown.append(f"({r or '*'}->{h or '*'})")
        details.append(f"{cut_id}:\t{' '.join(shown)}")

    num_correct = stats.num_ref_words - stats.dels - stats.subs
    out = [
        f"%WER = {stats.wer:.2f}",
        f"Errors: {stats.ins} insertions, {stats.dels} deletions, {stats.subs} substitutions, over "
        f"{stats.num_ref_words} reference words ({num_correct} correct)",
        "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, "
        "INSERTIONS:, PER-WORD STATS:",
        "",
        "PER-UTT DETAILS: corr or (ref->hyp)",
        *details,
        "",
        "SUBSTITUTIONS: count ref -> hyp",
        *(f"{n}   {r} -> {h}" for (r, h), n in _by_count(subs)),
        "",
        "DELETIONS: count ref",
        *(f"{n}   {w}" for w, n in _by_count(dels)),
        "",
        "INSERTIONS: count hyp",
        *(f"{n}   {w}" for w, n in _by_count(ins)),
        "",
        "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp",
    ]
    words = set(correct) | set(ref_errors) | set(hyp_errors)
    errors = Counter({w: ref_errors[w] + hyp_errors[w] for w in words})
    for w in sorted(words, key=lambda w: (-errors[w], w)):
        out.append(
            f"{w}   {correct[w]} {errors[w]} {correct[w] + ref_errors[w]} {correct[w] + hyp_errors[w]}"
        )
    return "\n".join(out) + "\n"


def _by_count(counter: Counter) -> list[tuple[Any, int]]:
    """Most frequent first, ties in a fixed order."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def save_results(
    exp_dir: str | Path,
    test_set: str,
    method: str,
    results: Sequence[Result],
    rtf: float | None = None,
    model_info: dict[str, Any] | None = None,
    latency: dict[str, Any] | None = None,
) -> WerStats:
    """Scores ``results`` and writes the four result files for (``test_set``, ``method``) into ``exp_dir``.

    Args:
        exp_dir: the experiment directory.
        test_set: test set name (may contain dashes, e.g. ``test-clean``).
        method: decoding method name, e.g. ``greedy_search`` or ``modified_beam_search_beam_4``.
        results: (cut id, reference words, hypothesis words) per utterance.
        rtf: decode real-time factor (decode seconds / audio seconds).
        model_info: free-form facts about the model for the report; ``num_params`` (int) is plotted.
        latency: a streaming model's latency on this set (the fields of
            :class:`kd.decode.latency.LatencyStats`); written as ``latency``, null when not measured.
    Returns:
        the WER statistics.
    """
    exp_dir = Path(exp_dir)
    stats = compute_wer(results)
    name = f"{test_set}-{method}"
    write_text_atomic(exp_dir / f"recogs-{name}.txt", recogs_text(results))
    write_text_atomic(exp_dir / f"errs-{name}.txt", error_stats_text(results, stats))
    write_text_atomic(exp_dir / f"wer-{name}.txt", f"{test_set}\t{method}\t{stats.summary()}\n")
    record = {
        "set": test_set,
        "method": method,
        "wer": stats.wer,
        "ins": stats.ins,
        "del": stats.dels,
        "sub": stats.subs,
        "num_ref_words": stats.num_ref_words,
        "num_utts": stats.num_utts,
        "rtf": rtf,
        "model": model_info or {},
        "latency": latency,
    }
    write_text_atomic(exp_dir / f"wer-{name}.json", json.dumps(record, indent=2) + "\n")
    return stats
