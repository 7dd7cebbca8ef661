"""``./run.sh --quick true`` end to end: every stage (0-10) on the test-size synthetic corpus with the toy
models of egs/synth/quick/, the rows of all five paper tables, and one Noisy Student round; then stage 7
of table (e) over two seeds.

It runs in a recipe directory of its own (see test_recipe_corpora), with the TTS engines that the synthetic
corpus needs (espeak-ng at least; tools/install.sh installs them).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from test_recipe_corpora import make_recipe, run_recipe

from kd.config import from_dict
from kd.data.synth.voices import ESPEAK, available_voices
from kd.data.tokenizer import Tokenizer
from kd.decode.tables import load_tables, student_rows
from kd.models import ModelConfig
from kd.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def model_of(config: Path) -> ModelConfig:
    return from_dict(ModelConfig, yaml.safe_load(config.read_text())["model"])


@pytest.mark.slow
def test_quick_profile_runs_every_stage_and_table(tmp_path: Path) -> None:
    engines = {v.engine for v in available_voices()}
    assert ESPEAK in engines, "espeak-ng is required for the synthetic corpus (tools/install.sh installs it)"
    recipe = make_recipe(tmp_path)
    # Two students at a time whatever the machine (the default depends on nproc, which OMP_NUM_THREADS caps).
    out = run_recipe(recipe, "--quick", "true", "--student-jobs", "2")

    for n in range(11):
        assert f"[run.sh] stage {n}" in out.stdout, f"stage {n} did not run"
    data, exp = recipe / "data" / "synth_quick", recipe / "exp" / "synth_quick"
    assert not (recipe / "data" / "synth").exists() and not (recipe / "exp" / "synth").exists()
    assert (recipe / "download" / "synth-test" / "corpus.json").is_file()
    lang = data / "lang_bpe_48"
    assert Tokenizer(lang / "bpe.model").vocab_size == 48
    # The synthetic corpus' LM reads the text the corpus builder leaves beside the audio.
    lm_state = load_checkpoint(exp / "lm" / "epoch-1.pt")
    assert lm_state["train_text"] == "download/synth-test/lm-text.txt.gz"

    # The rows of ../conf/students/, reached through quick/students, build on the toy configs.
    quick = ROOT / "egs" / "synth" / "quick"
    assert model_of(exp / "student_none" / "config.yaml") == model_of(quick / "student.yaml")
    assert model_of(exp / "student_sparse60" / "config.yaml") == model_of(quick / "teacher.yaml")
    assert model_of(exp / "student_cascaded" / "config.yaml") == model_of(quick / "cascaded_student.yaml")

    assert re.search(r"torch threads \d+, output in exp/synth_quick/student_none/train\.log", out.stdout)
    assert "epoch 1: validation loss" in (exp / "student_none" / "train.log").read_text()
    assert re.search(r"torch threads \d+, output in exp/synth_quick/student_none/decode\.log", out.stdout)
    assert "test greedy_search: WerStats" in (exp / "student_none" / "decode.log").read_text()
    assert (exp / "results.md").is_file()
    tables_md = (exp / "tables.md").read_text()
    tables = load_tables(ROOT / "egs" / "synth" / "tables.yaml")
    assert len(tables) == 5
    for spec in tables:
        assert spec.title in tables_md and spec.title in out.stdout, spec.name
    assert "not run" not in tables_md and "Not decoded" not in tables_md
    for row in student_rows(tables):
        assert (exp / f"student_{row}" / "wer-test-greedy_search.json").is_file(), row

    (onnx,) = exp.glob("student_*/onnx")
    for name in ("encoder", "decoder", "joiner"):
        assert (onnx / f"{name}.onnx").is_file() and (onnx / f"{name}.int8.onnx").is_file(), name
    assert (onnx / "wer-test-onnx_greedy_search.json").is_file()
    assert (onnx / "wer-test-onnx_int8_greedy_search.json").is_file()

    nst = exp / "nst_1"
    assert (nst / "targets" / "synth_unlabelled_targets.jsonl.gz").is_file()
    assert (nst / "wer-test-greedy_search.json").is_file()
    assert not (exp / "nst_2").exists()

    # Over seeds, each seed's cascaded_kd learns from the cascaded teacher of its own seed, trained first.
    seeds = ("--tables", "e", "--seeds", 2, "--student-jobs", 2, "--stage", 7, "--stop-stage", 7)
    run_recipe(recipe, "--quick", "true", *seeds)
    for seed in (42, 43):
        student = exp / f"student_cascaded_kd_seed{seed}"
        teacher = yaml.safe_load((student / "config.yaml").read_text())["kd"]["teacher"]
        assert teacher == f"exp/synth_quick/student_cascaded_teacher_seed{seed}"
        assert (student / "epoch-1.pt").is_file()
