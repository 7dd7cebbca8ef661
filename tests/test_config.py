from dataclasses import dataclass, field

import pytest

from kd.config import ConfigError, from_dict, load_yaml, save_yaml, to_dict


@dataclass
class Inner:
    size: int = 4
    rate: float = 0.5
    kind: str = "a"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    names: list[str] = field(default_factory=list)
    pair: tuple[float, float] = (0.9, 0.98)
    flag: bool = False
    maybe: int | None = None


def test_nested_and_types():
    cfg = from_dict(Outer, {"inner": {"size": 8, "rate": 1}, "names": ["x"], "pair": [0.1, 0.2], "maybe": 3})
    assert cfg.inner.size == 8 and cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    assert cfg.pair == (0.1, 0.2) and cfg.maybe == 3 and cfg.inner.kind == "a"


def test_unknown_key_names_the_path():
    with pytest.raises(ConfigError, match=r"config\.inner.*unknown key\(s\) \['sise'\]"):
        from_dict(Outer, {"inner": {"sise": 3}})


@pytest.mark.parametrize(
    "data", [{"flag": "yes"}, {"inner": {"size": 2.5}}, {"inner": {"size": True}}, {"names": "abc"}]
)
def test_wrong_types_are_errors(data):
    with pytest.raises(ConfigError):
        from_dict(Outer, data)


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    save_yaml(Outer(inner=Inner(size=16)), path)
    cfg = load_yaml(Outer, path, ["inner.kind=b", "flag=true", "pair=[0.5, 0.6]"])
    assert cfg.inner.size == 16 and cfg.inner.kind == "b" and cfg.flag and cfg.pair == (0.5, 0.6)
    assert to_dict(cfg)["pair"] == [0.5, 0.6]
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_yaml(Outer, path, ["flag"])
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(Outer, tmp_path / "missing.yaml")


def test_base_is_taken_next_to_a_symlinked_directory(tmp_path):
    """A row reached through a linked directory builds on the base beside the link, not the link's target."""
    for name, size in (("real", 8), ("quick", 2)):
        (tmp_path / name).mkdir()
        save_yaml(Outer(inner=Inner(size=size)), tmp_path / name / "base.yaml")
    (tmp_path / "real" / "rows").mkdir()
    (tmp_path / "real" / "rows" / "row.yaml").write_text("base: ../base.yaml\ninner: {kind: b}\n")
    (tmp_path / "quick" / "rows").symlink_to("../real/rows")
    assert load_yaml(Outer, tmp_path / "real" / "rows" / "row.yaml").inner == Inner(size=8, kind="b")
    assert load_yaml(Outer, tmp_path / "quick" / "rows" / "row.yaml").inner == Inner(size=2, kind="b")


def test_base_chain_loop_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: sub/../b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nflag: true\n")
    with pytest.raises(ConfigError, match="'base' chain loops"):
        load_yaml(Outer, tmp_path / "a.yaml")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "exp/row"), ("", "exp/row"), ("_seed43", "exp/row_seed43")]
)
def test_a_variable_with_a_default_may_be_unset_or_empty(tmp_path, monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("KD_TEST_SUFFIX", raising=False)
    else:
        monkeypatch.setenv("KD_TEST_SUFFIX", value)
    (tmp_path / "row.yaml").write_text('inner: {kind: "exp/row${KD_TEST_SUFFIX:-}"}\n')
    assert load_yaml(Outer, tmp_path / "row.yaml").inner.kind == expected
    (tmp_path / "row.yaml").write_text('inner: {kind: "${KD_TEST_SUFFIX:-exp/row}"}\n')
    assert load_yaml(Outer, tmp_path / "row.yaml").inner.kind == (value or "exp/row")
