"""run.sh stage 7 trains students side by side (--student-jobs): each job's output goes to its train.log,
and a failing job stops the stage with the end of its log."""

from __future__ import annotations

from pathlib import Path

from test_recipe_corpora import make_recipe, run_recipe


def test_a_failing_student_job_stops_stage_7_with_its_log(tmp_path: Path) -> None:
    recipe = make_recipe(tmp_path)
    bad = recipe / "bad_row.yaml"
    bad.write_text("base: egs/synth/conf/student.yaml\ntrain:\n  no_such_key: 1\n")
    out = run_recipe(
        recipe,
        "--students",
        f"{bad} {bad}",
        "--seeds",
        "2",
        "--student-jobs",
        "2",
        "--stage",
        "7",
        "--stop-stage",
        "7",
        check=False,
    )
    assert out.returncode != 0
    for seed in (42, 43):
        assert (recipe / "exp" / "synth" / f"student_bad_row_seed{seed}" / "train.log").is_file()
        assert f"stage 7: student {bad} (seed {seed}) -> exp/synth/student_bad_row_seed{seed}" in out.stdout
        assert f"output in exp/synth/student_bad_row_seed{seed}/train.log" in out.stdout
    assert "stage 7: training exp/synth/student_bad_row_seed" in out.stderr
    assert "failed (exit 1)" in out.stderr
    assert "no_such_key" in out.stderr  # the tail of the failed job's train.log
    assert "finished stages" not in out.stdout
