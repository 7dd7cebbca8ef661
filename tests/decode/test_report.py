"""The report tool: Markdown table and plot from wer-*.json files written by save_results."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kd.bin.report import main
from kd.decode.report import collect_results
from kd.decode.scoring import save_results


def write_experiments(root) -> None:
    ref = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    save_results(
        root / "synth" / "teacher",
        "test",
        "greedy_search",
        [("u", ref, ref[:-1])],
        0.02,
        {"num_params": 5_000_000},
    )
    save_results(
        root / "synth" / "teacher",
        "test",
        "modified_beam_search",
        [("u", ref, ref)],
        0.08,
        {"num_params": 5_000_000},
    )
    save_results(
        root / "synth" / "student",
        "test",
        "greedy_search",
        [("u", ref, ref[:-3] + ["z"])],
        0.01,
        {"num_params": 1_250_000},
    )
    save_results(root / "synth" / "baseline", "test-other", "greedy_search", [("u", ref, ref)], None, None)


def test_collect_results(tmp_path) -> None:
    write_experiments(tmp_path / "exp")
    rows = collect_results([tmp_path / "exp", tmp_path / "exp" / "synth"])  # overlapping dirs: no duplicates
    assert [(r.experiment, r.test_set, r.method) for r in rows] == [
        ("exp/synth/baseline", "test-other", "greedy_search"),
        ("exp/synth/student", "test", "greedy_search"),
        ("exp/synth/teacher", "test", "greedy_search"),
        ("exp/synth/teacher", "test", "modified_beam_search"),
    ]
    student = rows[1]
    assert (student.wer, student.ins, student.dels, student.subs) == (30.0, 0, 2, 1)
    assert (student.num_params, student.rtf) == (1_250_000, 0.01)


def test_report_cli(tmp_path) -> None:
    write_experiments(tmp_path / "exp")
    out, plot = tmp_path / "results.md", tmp_path / "wer.png"
    command = ["-m", "kd.bin.report", str(tmp_path / "exp"), "--out", str(out), "--plot", str(plot)]
    proc = subprocess.run([sys.executable, *command], capture_output=True, text=True, check=True)
    table = out.read_text()
    assert proc.stdout == table
    lines = table.splitlines()
    assert lines[0] == "| experiment | set | method | WER (%) | ins | del | sub | params | RTF |"
    assert len(lines) == 2 + 4
    assert "| exp/synth/student | test | greedy_search | 30.00 | 0 | 2 | 1 | 1.25 M | 0.0100 |" in lines
    assert "| exp/synth/baseline | test-other | greedy_search | 0.00 | 0 | 0 | 0 | - | - |" in lines
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
    assert "1 result(s) have no model.num_params" in proc.stderr


def test_report_errors_name_the_file(tmp_path, capsys) -> None:
    (tmp_path / "exp").mkdir()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "exp")])
    assert "no wer-*.json" in capsys.readouterr().err

    bad = tmp_path / "exp" / "wer-test-greedy_search.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "exp")])
    assert str(bad) in capsys.readouterr().err

    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])
    assert "no such directory" in capsys.readouterr().err


def test_report_best_prints_the_experiment_with_the_lowest_wer(tmp_path, capsys) -> None:
    write_experiments(tmp_path / "exp")
    synth = tmp_path / "exp" / "synth"
    main([str(synth / "teacher"), str(synth / "student"), "--best", "test", "greedy_search"])
    assert capsys.readouterr().out.strip() == str((synth / "teacher").resolve())
    with pytest.raises(SystemExit):
        main([str(synth / "student"), "--best", "dev", "greedy_search"])
    assert "no greedy_search result on dev" in capsys.readouterr().err
