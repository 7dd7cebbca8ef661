"""Libri-Light manifests through lhotse's recipe, on a fake tree in Libri-Light's real layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_corpora import make_librilight_tree
from lhotse import RecordingSet, SupervisionSet

from kd.data.errors import CorpusLayoutError
from kd.data.io import manifest_path
from kd.data.librilight import prepare_librilight_manifests


def test_voice_activity_segments_become_textless_supervisions(tmp_path: Path) -> None:
    corpus = make_librilight_tree(tmp_path / "librilight", "small", files=3)
    out = tmp_path / "m"
    prepare_librilight_manifests(corpus, ["small"], out, "librilight")
    recs = RecordingSet.from_file(manifest_path(out, "librilight", "recordings", "small")).to_eager()
    sups = SupervisionSet.from_file(manifest_path(out, "librilight", "supervisions", "small")).to_eager()
    assert len(recs) == 3 and len(sups) == 6
    assert all(r.id.startswith("small/") and r.sampling_rate == 16000 for r in recs)
    for sup in sups:
        assert sup.text is None
        assert sup.recording_id in recs.ids
        meta = json.loads(Path(recs[sup.recording_id].sources[0].source).with_suffix(".json").read_text())
        assert sup.speaker == meta["speaker"]
        assert [sup.start, sup.end] in [pytest.approx(seg) for seg in meta["voice_activity"]]


def test_missing_json_names_the_file(tmp_path: Path) -> None:
    corpus = make_librilight_tree(tmp_path / "librilight", "small", files=2)
    meta = sorted(corpus.rglob("*.json"))[0]
    meta.unlink()
    with pytest.raises(CorpusLayoutError, match=str(meta)):
        prepare_librilight_manifests(corpus, ["small"], tmp_path / "m", "librilight")


def test_unknown_or_missing_subset(tmp_path: Path) -> None:
    corpus = make_librilight_tree(tmp_path / "librilight", "small", files=1)
    with pytest.raises(CorpusLayoutError, match="no such directory"):
        prepare_librilight_manifests(corpus, ["medium"], tmp_path / "m", "librilight")
    with pytest.raises(CorpusLayoutError, match="knows the subsets"):
        prepare_librilight_manifests(corpus, ["tiny"], tmp_path / "m", "librilight")
