"""Every shipped experiment config loads, builds its model, and (for the presets) matches its size target."""

from pathlib import Path

import pytest

from kd.config import load_yaml
from kd.models import build_model, count_parameters
from kd.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(ROOT.glob("egs/*/conf/*.yaml"))

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
}


def test_there_are_configs():
    assert {f"{p.parents[1].name}/{p.stem}" for p in CONFIGS} >= {*SIZES, *OTHER_SIZES, *PRESET_VARIANTS}


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
