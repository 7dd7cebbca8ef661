"""Paper tables: WER over seeds, relative reduction against the same seed's baseline, sizes, times, gaps."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from kd.bin.report import main as report_main
from kd.decode.tables import load_tables, render_table, select_tables, student_rows, train_seconds

TABLES = """
c:
  title: one-best KD
  baseline: {kd: none}
  rows: [teacher, none, kd]
e:
  title: other
  baseline: none
  rows: [none, kd, extra]
"""


def write_result(exp: Path, test_set: str, wer: float, params: int = 2_000_000, nonzero: int | None = None):
    exp.mkdir(parents=True, exist_ok=True)
    model = {"num_params": params, "nonzero_params": params if nonzero is None else nonzero, "epoch": 2}
    data = {
        "set": test_set,
        "method": "greedy_search",
        "wer": wer,
        "ins": 0,
        "del": 0,
        "sub": 0,
        "model": model,
    }
    (exp / f"wer-{test_set}-greedy_search.json").write_text(json.dumps(data))


def write_epochs(exp: Path, *records: tuple[int, float]):
    lines = [
        json.dumps({"epoch": e, "seconds": s, "frames": 1, "train": {}, "valid_loss": 1.0})
        for e, s in records
    ]
    (exp / "epochs.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def tables_file(tmp_path):
    path = tmp_path / "tables.yaml"
    path.write_text(TABLES)
    return path


def test_rows_over_seeds_against_the_same_seeds_baseline(tmp_path, tables_file):
    exp = tmp_path / "exp"
    write_result(exp / "teacher", "test", 10.0, params=6_000_000)
    base = {1: 40.0, 2: 50.0}
    kd = {1: 30.0, 2: 45.0}
    for s in (1, 2):
        write_result(exp / f"student_none_seed{s}", "test", base[s])
        write_result(exp / f"student_kd_seed{s}", "test", kd[s], nonzero=800_000)
        write_epochs(exp / f"student_kd_seed{s}", (1, 60.0), (2, 60.0 * s), (3, 999.0))
    table = render_table(select_tables(load_tables(tables_file), ["c"])[0], exp, seeds=[1, 2])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}

    mean, std = statistics.mean(kd.values()), statistics.stdev(kd.values())
    werr = [100 * (1 - kd[s] / base[s]) for s in (1, 2)]
    kd_line = lines["kd (vs none)"]
    assert f"{mean:.2f} +- {std:.2f}" in kd_line
    assert f"{statistics.mean(werr):.2f} +- {statistics.stdev(werr):.2f}" in kd_line
    assert "2.00 M (0.80 M non-zero)" in kd_line
    # Epochs up to the decoded one (2): 1 + 1 min for seed 1, 1 + 2 for seed 2; epoch 3 is not counted.
    assert "2.50 +- 0.71" in kd_line and kd_line.rstrip(" |").endswith("2")
    assert "| 10.00 |" in lines["teacher"] and "6.00 M" in lines["teacher"]  # the teacher is not per seed


def test_missing_experiments_are_listed(tmp_path, tables_file):
    exp = tmp_path / "exp"
    write_result(exp / "student_none", "dev", 50.0)
    write_result(exp / "student_kd", "dev", 40.0)
    table = render_table(select_tables(load_tables(tables_file), ["e"])[0], exp, seeds=None)
    assert "| extra (vs none) | not run |" in table and "student_extra" in table.splitlines()[-1]
    assert "| kd (vs none) | 40.00 | 20.00 |" in table


def test_train_seconds_counts_a_redone_epoch_once(tmp_path):
    write_epochs(tmp_path, (1, 10.0), (2, 5.0), (2, 7.0))
    assert train_seconds(tmp_path) == 17.0 and train_seconds(tmp_path, epoch=1) == 10.0
    assert train_seconds(tmp_path / "nowhere") is None


def test_student_rows_and_selection(tables_file):
    tables = load_tables(tables_file)
    assert student_rows(tables) == ["none", "kd", "extra"]
    assert [t.name for t in select_tables(tables, ["all"])] == ["c", "e"]
    with pytest.raises(ValueError, match=r"no table\(s\) \['x'\]"):
        select_tables(tables, ["x"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("c: {rows: []}", "non-empty list 'rows'"),
        ("c: {rows: [a], baseline: b}", r"baseline names \['b'\]"),
        ("c: {rows: [a], colour: red}", r"unknown key\(s\) \['colour'\]"),
    ],
)
def test_bad_tables_files(tmp_path, text, message):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_tables(path)


def test_cli_prints_rows_and_tables(tmp_path, tables_file, capsys):
    write_result(tmp_path / "exp" / "student_none", "test", 50.0)
    report_main([str(tmp_path / "exp"), "--tables", str(tables_file), "--names", "c", "--rows"])
    assert capsys.readouterr().out == "none kd\n"
    out = tmp_path / "tables.md"
    report_main([str(tmp_path / "exp"), "--tables", str(tables_file), "--out", str(out)])
    assert "**one-best KD**" in out.read_text() and "**other**" in out.read_text()
