"""kd.bin.wer_breakdown and its module: a decode's errors per speaker or per speakers-table column."""

from __future__ import annotations

import pytest
from lhotse import CutSet, MonoCut, SupervisionSegment

from kd.bin import wer_breakdown
from kd.data.errors import DataError
from kd.decode.breakdown import char_errors, group_errors, read_recogs, read_speakers_table
from kd.decode.scoring import compute_wer, recogs_text

RESULTS = [
    ("1-10-0000", ["THE", "CAT", "SAT"], ["THE", "CAT", "SAD"]),  # 1 word, 1 letter
    ("1-10-0001", ["ON", "THE", "MAT"], ["ON", "THE", "MAT"]),
    ("2-20-0000", ["A", "DOG", "RAN", "FAR"], ["A", "DOG", "FAR"]),  # 1 word, 4 characters
    ("3-30-0000", ["HELLO"], ["HELLO", "O"]),  # 1 insertion, 2 characters
]

# LibriSpeech's own layout, one NAME with a '|' in it, and the synthetic corpus' extra columns.
LIBRISPEECH_TABLE = """; Some header text
;ID  |SEX| SUBSET           |MINUTES| NAME
1    | F | train-clean-100  | 25.03 | Anne
2    | M | test-clean       |  8.00 | |CBW|Simon
3    | F | test-clean       |  8.10 | Eve
"""
SYNTH_TABLE = """; Synthetic speakers
;ID  |SEX| SUBSET     |MINUTES| ENGINE    | VOICE       | FAMILY        | RATE | PITCH
1    | F | test       |  0.70 | espeak-ng | en-us+f2    | espeak-f2     | 0.973| +4.7
2    | M | test       |  0.72 | festival  | ked_diphone | KED           | 1.025| -2.5
3    | M | test       |  0.72 | festival  | ked_diphone | KED           | 0.945| +34.1
"""


def _cuts(path, speakers: dict[str, str | None]) -> str:
    cuts = []
    for cut_id, spk in speakers.items():
        sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=1.0, speaker=spk)
        cuts.append(MonoCut(id=cut_id, start=0.0, duration=1.0, channel=0, supervisions=[sup]))
    CutSet.from_cuts(cuts).to_file(path)
    return str(path)


def test_recogs_read_back_as_written(tmp_path):
    path = tmp_path / "recogs-test-greedy_search.txt"
    path.write_text(recogs_text(RESULTS))
    assert sorted(read_recogs(path)) == sorted(RESULTS)


def test_groups_add_up_to_the_whole_set():
    group_of = {"1-10-0000": "a", "1-10-0001": "a", "2-20-0000": "b", "3-30-0000": "b"}
    rows = group_errors(RESULTS, group_of)
    assert [(r.group, r.num_utts, r.num_words, r.word_errors) for r in rows] == [
        ("a", 2, 6, 1),
        ("b", 2, 5, 2),
    ]
    assert sum(r.word_errors for r in rows) == compute_wer(RESULTS).errors
    assert rows[0].wer == pytest.approx(100 / 6)
    # characters with single spaces: "THE CAT SAT" -> "THE CAT SAD" 1; "A DOG RAN FAR" -> "A DOG FAR" 4
    assert (rows[0].char_errors, rows[0].num_chars) == (1, 11 + 10)
    assert (rows[1].char_errors, rows[1].num_chars) == (4 + 2, 13 + 5)
    assert char_errors(["HELLO"], ["HELLO", "O"]) == 2


def test_speakers_tables_of_librispeech_and_the_synthetic_corpus(tmp_path):
    ls = tmp_path / "SPEAKERS.TXT"
    ls.write_text(LIBRISPEECH_TABLE)
    table = read_speakers_table(ls)
    assert table["2"] == {
        "ID": "2",
        "SEX": "M",
        "SUBSET": "test-clean",
        "MINUTES": "8.00",
        "NAME": "|CBW|Simon",
    }
    synth = tmp_path / "SPEAKERS.txt"
    synth.write_text(SYNTH_TABLE)
    assert {k: v["FAMILY"] for k, v in read_speakers_table(synth).items()} == {
        "1": "espeak-f2",
        "2": "KED",
        "3": "KED",
    }


def test_cli_groups_by_a_column(tmp_path, capsys):
    recogs = tmp_path / "recogs-test-greedy_search.txt"
    recogs.write_text(recogs_text(RESULTS))
    cuts = _cuts(tmp_path / "cuts.jsonl.gz", {c: c.split("-")[0] for c, _, _ in RESULTS})
    (tmp_path / "SPEAKERS.txt").write_text(SYNTH_TABLE)
    wer_breakdown.main(
        ["--cuts", cuts, "--speakers", str(tmp_path / "SPEAKERS.txt"), "--by", "FAMILY", str(recogs)]
    )
    out = capsys.readouterr().out
    # KED: speakers 2 and 3, 2 errors in 5 words, all of the set's 3 errors but one
    assert "| KED | 2 | 5 | 40.00 | 33.33 | 66.7 |" in out
    assert "| espeak-f2 | 2 | 6 | 16.67 | 4.76 | 33.3 |" in out
    assert "| all | 4 | 11 | 27.27 |" in out
    wer_breakdown.main(["--cuts", cuts, str(recogs)])
    assert "| 2 | 1 | 4 | 25.00 |" in capsys.readouterr().out


def test_bad_input_names_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "recogs-x.txt"
    bad.write_text("1-10-0000:\tref=['A']\nnot a recogs line\n")
    with pytest.raises(DataError, match=r"recogs-x.txt:2: not a recogs line"):
        read_recogs(bad)
    bad.write_text("1-10-0000:\tref=['A']\n")
    with pytest.raises(DataError, match="no hyp= line"):
        read_recogs(bad)
    table = tmp_path / "SPEAKERS.txt"
    table.write_text(SYNTH_TABLE + "4 | M | test\n")
    with pytest.raises(DataError, match=r"SPEAKERS.txt:6: 3 fields where the header names 9"):
        read_speakers_table(table)
    table.write_text(SYNTH_TABLE)
    cuts = _cuts(tmp_path / "c.jsonl.gz", {"9-90-0000": "9"})
    with pytest.raises(DataError, match="no row for speaker 9"):
        wer_breakdown.groups(cuts, table, "FAMILY")
    with pytest.raises(DataError, match="no column 'ACCENT'"):
        wer_breakdown.groups(_cuts(tmp_path / "d.jsonl.gz", {"1-10-0000": "1"}), table, "ACCENT")
    with pytest.raises(DataError, match="needs --speakers"):
        wer_breakdown.groups(cuts, None, "FAMILY")
    with pytest.raises(DataError, match="has no speaker"):
        wer_breakdown.groups(_cuts(tmp_path / "e.jsonl.gz", {"1-10-0000": None}), None, "speaker")
    recogs = tmp_path / "recogs-test-greedy_search.txt"
    recogs.write_text(recogs_text(RESULTS))
    with pytest.raises(DataError, match="not in --cuts"):
        wer_breakdown.main(["--cuts", cuts, str(recogs)])
