"""Row `one_best_lm` (paper (c) with LM-fused targets for the unlabelled audio): a second set of unlabelled
targets named by ${KD_UNLABELLED_TARGETS_LM:?...}, which refuses to be empty, and its place in table (c)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from test_recipe_corpora import make_recipe, run_recipe

from kd.config import ConfigError, load_yaml, to_dict
from kd.decode.tables import load_tables
from kd.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ["synth", "librispeech"]
RUN_SH_PATHS = ("KD_TRAIN_TARGETS", "KD_UNLABELLED_TARGETS", "KD_VALID_CUTS", "KD_BPE_MODEL")


@dataclass
class Paths:
    data: str = ""


def _load(tmp_path: Path, value: str) -> Paths:
    path = tmp_path / "paths.yaml"
    path.write_text(f'data: "{value}"\n')
    return load_yaml(Paths, path)


def test_required_variables_refuse_unset_and_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("KD_TEST_DATA", raising=False)
    with pytest.raises(ConfigError, match=r"KD_TEST_DATA is not set: make it first$"):
        _load(tmp_path, "${KD_TEST_DATA:?make it first}")
    monkeypatch.setenv("KD_TEST_DATA", "")
    with pytest.raises(
        ConfigError, match=r"paths.yaml.data: environment variable KD_TEST_DATA is empty: make"
    ):
        _load(tmp_path, "${KD_TEST_DATA:?make it first}")
    with pytest.raises(ConfigError, match="KD_TEST_DATA is empty: set it to a non-empty value"):
        _load(tmp_path, "${KD_TEST_DATA:?}")
    assert _load(tmp_path, "${KD_TEST_DATA}").data == ""  # the plain form keeps meaning "none" when empty
    monkeypatch.setenv("KD_TEST_DATA", "/targets")
    assert _load(tmp_path, "a${KD_TEST_DATA:?make it first}/b").data == "a/targets/b"


@pytest.mark.parametrize("corpus", CORPORA)
def test_row_is_one_best_on_the_fused_unlabelled_targets(corpus, monkeypatch):
    for name in RUN_SH_PATHS:
        monkeypatch.setenv(name, f"/{name.lower()}")
    rows = ROOT / "egs" / corpus / "conf" / "students"
    assert (rows / "one_best_lm.yaml").read_text().startswith("# Student row `one_best_lm`: ")

    monkeypatch.setenv("KD_UNLABELLED_TARGETS_LM", "/fused")
    fused = to_dict(load_yaml(TrainConfig, rows / "one_best_lm.yaml"))
    plain = to_dict(load_yaml(TrainConfig, rows / "one_best.yaml"))
    assert fused["paths"].pop("unlabelled_cuts") == "/fused"
    assert plain["paths"].pop("unlabelled_cuts") == "/kd_unlabelled_targets"
    assert fused == plain

    # run.sh exports it empty when stage 6 made no fused set: training refuses, saying how to make it
    monkeypatch.setenv("KD_UNLABELLED_TARGETS_LM", "")
    with pytest.raises(
        ConfigError, match="KD_UNLABELLED_TARGETS_LM is empty: .*stage 6 with --targets-lm-scale"
    ):
        load_yaml(TrainConfig, rows / "one_best_lm.yaml")


def test_table_c_has_the_row_against_no_kd():
    (table,) = [t for t in load_tables(ROOT / "egs" / "synth" / "tables.yaml") if t.name == "c"]
    assert table.rows.index("one_best_lm") == table.rows.index("one_best") + 1
    assert table.baseline["one_best_lm"] == "none"


def test_run_sh_refuses_the_row_without_fused_targets(tmp_path):
    recipe = make_recipe(tmp_path)
    out = run_recipe(
        recipe, "--students", "none one_best_lm", "--stage", "7", "--stop-stage", "7", check=False
    )
    assert out.returncode != 0
    assert "row 'one_best_lm' trains on LM-fused unlabelled targets" in out.stderr
    assert "--targets-lm-scale W (not 0)" in out.stderr
    assert "stage 7" not in out.stdout  # refused before training anything
