"""WER counts and the icefall-style result files, on hand-computed examples."""

from __future__ import annotations

import json

import pytest

from kd.decode.scoring import align, compute_wer, save_results

RESULTS = [
    ("utt3", ["hello", "world"], ["hello", "word"]),  # one substitution
    ("utt1", ["the", "cat", "sat"], ["the", "cat", "sat", "down"]),  # one insertion
    ("utt2", ["a", "b", "c", "d"], ["a", "c", "d"]),  # one deletion
    ("utt4", ["x", "y"], ["x", "y"]),
]


def test_align_marks_gaps_with_none() -> None:
    assert align(["a", "b", "c", "d"], ["a", "c", "d"]) == [("a", "a"), ("b", None), ("c", "c"), ("d", "d")]
    # words that look like gap symbols are still words
    assert align(["*", "-1"], ["*"]) == [("*", "*"), ("-1", None)]


def test_compute_wer_counts() -> None:
    stats = compute_wer(RESULTS)
    assert (stats.ins, stats.dels, stats.subs) == (1, 1, 1)
    assert stats.num_ref_words == 11 and stats.num_utts == 4
    assert stats.wer == pytest.approx(100 * 3 / 11)
    assert stats.summary() == "%WER 27.27 [ 3 / 11, 1 ins, 1 del, 1 sub ]"


def test_compute_wer_rejects_empty_references() -> None:
    with pytest.raises(ValueError, match="no reference words"):
        compute_wer([("u", [], ["a"])])


def test_result_files(tmp_path) -> None:
    save_results(tmp_path, "test-clean", "greedy_search", RESULTS, rtf=0.05, model_info={"num_params": 1234})

    recogs = (tmp_path / "recogs-test-clean-greedy_search.txt").read_text().splitlines()
    assert recogs[:2] == ["utt1:\tref=['the', 'cat', 'sat']", "utt1:\thyp=['the', 'cat', 'sat', 'down']"]
    assert len(recogs) == 8

    errs = (tmp_path / "errs-test-clean-greedy_search.txt").read_text()
    lines = errs.splitlines()
    assert lines[0] == "%WER = 27.27"
    assert lines[1] == (
        "Errors: 1 insertions, 1 deletions, 1 substitutions, over 11 reference words (9 correct)"
    )
    assert "utt1:\tthe cat sat (*->down)" in lines
    assert "utt2:\ta (b->*) c d" in lines
    assert "utt3:\thello (world->word)" in lines

    def section(title: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
        end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
        return lines[start:end]

    assert section("SUBSTITUTIONS:") == ["1   world -> word"]
    assert section("DELETIONS:") == ["1   b"]
    assert section("INSERTIONS:") == ["1   down"]
    per_word = {line.split()[0]: line.split()[1:] for line in section("PER-WORD STATS:")}
    assert per_word["world"] == ["0", "1", "1", "0"]  # corr, errors, in ref, in hyp
    assert per_word["word"] == ["0", "1", "0", "1"]
    assert per_word["b"] == ["0", "1", "1", "0"]
    assert per_word["down"] == ["0", "1", "0", "1"]
    assert per_word["cat"] == ["1", "0", "1", "1"]
    assert len(per_word) == 13

    wer_line = (tmp_path / "wer-test-clean-greedy_search.txt").read_text()
    assert wer_line == "test-clean\tgreedy_search\t%WER 27.27 [ 3 / 11, 1 ins, 1 del, 1 sub ]\n"

    record = json.loads((tmp_path / "wer-test-clean-greedy_search.json").read_text())
    assert record["wer"] == pytest.approx(27.2727, abs=1e-3)
    assert (record["ins"], record["del"], record["sub"]) == (1, 1, 1)
    assert (record["num_ref_words"], record["num_utts"], record["rtf"]) == (11, 4, 0.05)
    assert (record["set"], record["method"]) == ("test-clean", "greedy_search")
    assert record["model"] == {"num_params": 1234}
    assert not list(tmp_path.glob(".*.tmp"))
