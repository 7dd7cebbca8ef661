"""Every shipped experiment config loads, builds its model, and (for the presets) matches its size target."""

import re
from pathlib import Path

import pytest

from kd.config import load_yaml
from kd.models import build_model, count_parameters
from kd.train.config import TrainConfig
from kd.train.distill import build_training_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in ROOT.glob("egs/*/conf/*.yaml") if p.stem != "lm")
ROWS = sorted(ROOT.glob("egs/*/conf/students/*.yaml"))
# What run.sh exports for the configs' ${...} paths.
RUN_SH_VARIABLES = set(re.findall(r"\b(KD_[A-Z_]+)=", (ROOT / "run.sh").read_text()))


@pytest.fixture(autouse=True)
def run_sh_environment(monkeypatch):
    for name in RUN_SH_VARIABLES:
        monkeypatch.setenv(name, f"/{name.lower()}")


# (min, max) parameters with a 500-token vocabulary, as the configs' headers state.
SIZES = {
    "synth/teacher": (4e6, 8e6),
    "synth/student": (1e6, 2.5e6),
    "synth/cascaded_teacher": (6e6, 9e6),
    "synth/cascaded_student": (3e6, 4.5e6),
    "librispeech/teacher": (70e6, 100e6),
    "librispeech/student": (7e6, 12e6),
}
# Configs with no preset of their own.
OTHER_SIZES = {
    "librispeech/cascaded_teacher": (39e6, 43e6),
    "librispeech/cascaded_student": (19e6, 22e6),
}
# Configs whose model is a preset with options (preset name, options), e.g. a student pruned from the
# teacher's own weights, which must have the teacher's architecture.
PRESET_VARIANTS = {
    "librispeech/student_streaming": ("librispeech_student", {"causal": True}),
    "librispeech/sparse_student": ("librispeech_teacher", {}),
    "librispeech/colearn_student": ("librispeech_student", {}),
    "synth/teacher_12ep": ("synth_teacher", {}),
}


def test_there_are_configs():
    assert {f"{p.parents[1].name}/{p.stem}" for p in CONFIGS} >= {*SIZES, *OTHER_SIZES, *PRESET_VARIANTS}


def test_configs_use_only_what_run_sh_exports():
    # ${NAME} and ${NAME:?message}
    used = {v for p in [*CONFIGS, *ROWS] for v in re.findall(r"\$\{(\w+)", p.read_text())}
    assert used and used <= RUN_SH_VARIABLES, used - RUN_SH_VARIABLES


@pytest.mark.parametrize("path", ROWS, ids=lambda p: f"{p.parents[2].name}/{p.stem}")
def test_student_row_builds(path):
    config = load_yaml(TrainConfig, path)
    build_training_model(config, vocab_size=500)  # a co-learning row: both models, the shared decoder checked
    assert config.paths.train_cuts and config.paths.valid_cuts and config.paths.bpe_model
    if config.kd.method != "none" and config.kd.source == "stored" and config.kd.mode == "static":
        assert config.paths.train_cuts == "/kd_train_targets", "stored targets come with the train cuts"
    if config.sparsity.enabled:
        assert config.paths.init_from == "/kd_teacher", "a sparse student is pruned from the teacher"


@pytest.mark.parametrize("corpus", ["synth", "librispeech"])
def test_colearn_row_teacher_is_the_teacher(corpus):
    from kd.config import to_dict

    conf = ROOT / "egs" / corpus / "conf"
    teacher = load_yaml(TrainConfig, conf / "teacher.yaml").model
    rows = sorted((conf / "students").glob("colearn*.yaml"))
    assert {p.stem for p in rows} >= {"colearn", "colearn_shared"}
    for row in rows:
        config = load_yaml(TrainConfig, row)
        assert to_dict(config.kd.teacher_model) == to_dict(teacher), row.stem


def test_librispeech_has_the_synthetic_corpus_rows():
    """A method tried on the synthetic corpus has its LibriSpeech row, under the same name."""
    synth, librispeech = ({p.stem for p in ROWS if p.parents[2].name == c} for c in ("synth", "librispeech"))
    assert synth <= librispeech, synth - librispeech


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.stem}")
def test_config_builds(path):
    config = load_yaml(TrainConfig, path)
    model = build_model(config.model, vocab_size=500)
    total = count_parameters(model)["total"]
    low, high = {**SIZES, **OTHER_SIZES}.get(f"{path.parents[1].name}/{path.stem}", (0, float("inf")))
    assert low <= total <= high, total


@pytest.mark.parametrize("name", sorted(SIZES))
def test_config_model_is_its_preset(name):
    """The Python presets and the shipped YAML configs describe the same models."""
    from kd.config import to_dict
    from kd.models.presets import preset

    corpus, role = name.split("/")  # synth/cascaded_student -> preset synth_cascaded_student
    config = load_yaml(TrainConfig, ROOT / "egs" / corpus / "conf" / f"{role}.yaml")
    assert to_dict(config.model) == to_dict(preset(f"{corpus}_{role}"))


@pytest.mark.parametrize("name", sorted(PRESET_VARIANTS))
def test_config_model_is_a_preset_variant(name):
    from kd.config import to_dict
    from kd.models.presets import preset

    corpus, role = name.split("/")
    config = load_yaml(TrainConfig, ROOT / "egs" / corpus / "conf" / f"{role}.yaml")
    preset_name, options = PRESET_VARIANTS[name]
    assert to_dict(config.model) == to_dict(preset(preset_name, **options))


def test_colearn_teacher_is_the_teacher_preset():
    from kd.config import to_dict
    from kd.models.presets import preset

    config = load_yaml(TrainConfig, ROOT / "egs" / "librispeech" / "conf" / "colearn_student.yaml")
    assert config.kd.mode == "colearn" and config.kd.teacher_model is not None
    assert to_dict(config.kd.teacher_model) == to_dict(preset("librispeech_teacher"))


@pytest.mark.parametrize("path", sorted(ROOT.glob("egs/*/conf/lm.yaml")), ids=lambda p: p.parents[1].name)
def test_lm_config_builds(path):
    from kd.lm.config import LmConfig
    from kd.lm.model import build_lm

    build_lm(load_yaml(LmConfig, path), vocab_size=500)
