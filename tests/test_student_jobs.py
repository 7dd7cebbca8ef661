"""run.sh stages 7 and 8 train and decode students side by side (--student-jobs): each job's output goes to
its train.log (decode.log), a failing job stops the stage with the end of its log, and interrupting run.sh
stops every job and every process a job started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def fake_training(tmp_path: Path, training: str, module: str = "kd.bin.train") -> dict[str, str]:
    """An environment whose ``python`` runs the bash lines ``training`` instead of each command ``python -m
    <module> ...`` (its arguments in ``$*``) and the tests' Python for anything else."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1 $2" = "-m {module}" ]; then\n{training}fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("stage", [7, 8])
def test_interrupting_run_sh_stops_its_student_jobs(tmp_path: Path, stage: int) -> None:
    recipe = make_recipe(tmp_path)
    # Each training (decoding) command starts a long sleep and records its pid: the sleep is a grandchild
    # of the job, which run.sh must stop too.
    pids = tmp_path / "pids"
    module = {7: "kd.bin.train", 8: "kd.bin.decode"}[stage]
    lines = f"sleep 300 & echo $! >> {pids}; wait\n"
    env = {**fake_training(tmp_path, lines, module), "OMP_NUM_THREADS": "1"}
    args = [
        "--students",
        "none encoder_logits",
        "--student-jobs",
        "2",
        "--stage",
        stage,
        "--stop-stage",
        stage,
    ]
    proc = subprocess.Popen(
        ["bash", str(recipe / "run.sh"), "--device", "cpu", *map(str, args)],
        cwd=recipe,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: bash cannot trap a signal ignored when it starts, and the tests themselves may
        # run with SIGINT ignored (started in the background by a shell without job control, `cmd &`).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not (pids.is_file() and len(pids.read_text().split()) == 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    jobs = [int(pid) for pid in pids.read_text().split()]
    assert all(map(running, jobs))

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    deadline = time.monotonic() + 10
    while any(map(running, jobs)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(running, jobs)), "a process of a student job outlived run.sh"


def test_stage_8_decodes_two_students_at_once(tmp_path: Path) -> None:
    recipe = make_recipe(tmp_path)
    log = tmp_path / "decodes.log"
    # Each decoding command logs its start and end; the one of student_none fails.
    env = fake_training(
        tmp_path,
        '  dir=$(sed -n "s/.*--exp-dir \\([^ ]*\\).*/\\1/p" <<< "$*")\n'
        f'  echo "start $dir $(date +%s.%N)" >> {log}\n'
        "  sleep 1\n"
        f'  echo "end $dir $(date +%s.%N)" >> {log}\n'
        '  echo "decoding $dir on $*"\n'
        '  case $dir in *student_none) echo "no checkpoint in $dir" >&2; exit 3 ;; esac\n'
        "  exit 0\n",
        module="kd.bin.decode",
    )
    args = [
        "--students",
        "encoder_logits one_best none",
        "--student-jobs",
        "2",
        "--stage",
        "8",
        "--stop-stage",
        "8",
    ]
    out = subprocess.run(
        ["bash", str(recipe / "run.sh"), "--device", "cpu", *args],
        cwd=recipe,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    events = {}
    for line in log.read_text().splitlines():
        kind, path, when = line.split()
        events.setdefault((kind, Path(path).name), float(when))
    # the first two decode side by side, the third waits for a free slot
    assert events["start", "student_one_best"] < events["end", "student_encoder_logits"]
    assert events["start", "student_none"] >= min(
        events["end", "student_encoder_logits"], events["end", "student_one_best"]
    )
    for row in ("encoder_logits", "one_best", "none"):
        exp = f"exp/synth/student_{row}"
        assert f"stage 8: decode {exp} (greedy_search modified_beam_search, torch threads" in out.stdout
        assert f"output in {exp}/decode.log" in out.stdout
        decode_log = (recipe / exp / "decode.log").read_text()
        assert f"decoding {exp} on" in decode_log and "--num-threads 1" in decode_log
    assert "stage 8: decoding exp/synth/student_none failed (exit 3)" in out.stderr
    assert "no checkpoint in exp/synth/student_none" in out.stderr  # the tail of its decode.log
    assert "finished stages" not in out.stdout


def test_a_row_trains_after_the_teacher_row_of_its_seed(tmp_path: Path) -> None:
    """cascaded_kd learns from the cascaded_teacher row's model: its job waits for that row's job of the
    same seed (not for every job), and its config names that seed's experiment."""
    recipe = make_recipe(tmp_path)
    log = tmp_path / "jobs.log"
    # Each training command logs its start (with the suffix run.sh exports) and end; the teacher of seed 43
    # trains long enough for every other job to reach the head of the queue meanwhile.
    env = fake_training(
        tmp_path,
        '  dir=$(sed -n "s/.*--exp-dir \\([^ ]*\\).*/\\1/p" <<< "$*")\n'
        f'  echo "start $dir $(date +%s.%N) suffix=$KD_SEED_SUFFIX" >> {log}\n'
        "  case $dir in *cascaded_teacher_seed43) sleep 4 ;; *) sleep 0.2 ;; esac\n"
        f'  echo "end $dir $(date +%s.%N)" >> {log}\n'
        "  exit 0\n",
    )
    rows = "cascaded_teacher cascaded cascaded_kd"
    args = ["--students", rows, "--seeds", "2", "--student-jobs", "2", "--stage", "7", "--stop-stage", "7"]
    out = subprocess.run(
        ["bash", str(recipe / "run.sh"), "--device", "cpu", *args],
        cwd=recipe,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    events = {}
    for line in log.read_text().splitlines():
        kind, path, when, *rest = line.split()
        events[kind, Path(path).name] = (float(when), *rest)
    assert (
        events["start", "student_cascaded_kd_seed43"][0]
        >= events["end", "student_cascaded_teacher_seed43"][0]
    )
    # seed 42's student did not wait for seed 43's teacher
    assert (
        events["start", "student_cascaded_kd_seed42"][0] < events["end", "student_cascaded_teacher_seed43"][0]
    )
    for seed in (42, 43):
        assert events["start", f"student_cascaded_kd_seed{seed}"][1] == f"suffix=_seed{seed}"


def test_a_row_listed_before_its_teacher_row_is_refused(tmp_path: Path) -> None:
    recipe = make_recipe(tmp_path)
    out = run_recipe(
        recipe, "--students", "cascaded_kd cascaded_teacher", "--stage", "7", "--stop-stage", "7", check=False
    )
    assert out.returncode == 1
    assert (
        "row 'cascaded_kd' learns from row 'cascaded_teacher' (its kd.teacher): list 'cascaded_teacher'"
        in (out.stderr)
    )
    assert not (recipe / "exp" / "synth" / "student_cascaded_kd").exists()
