"""Stored fbank features: shapes, 16 kHz for any input rate, resumable parts, unreadable audio."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from fake_corpora import PreparedCorpus
from lhotse import CutSet, Fbank, FbankConfig
from lhotse.utils import fastcopy

from kd.data.errors import MissingFileError
from kd.data.features import compute_fbank, extract_features, make_fbank_extractor
from kd.data.io import cuts_path, feats_dir
from kd.data.kaldi import prepare_kaldi_manifests


def test_cuts_have_80_dim_features_per_supervision(prepared: PreparedCorpus) -> None:
    cuts = CutSet.from_file(cuts_path(prepared.fbank_dir, prepared.prefix, "train")).to_eager()
    assert len(cuts) == 12
    for cut in cuts:
        feats = cut.load_features()
        assert feats.shape == (round(cut.duration / 0.01), 80)
        assert cut.sampling_rate == 16000 and len(cut.supervisions) == 1
        assert cut.id == cut.supervisions[0].id
        assert Path(cut.features.storage_path).is_relative_to(feats_dir(prepared.fbank_dir, "synth", "train"))
    unlabelled = CutSet.from_file(cuts_path(prepared.fbank_dir, prepared.prefix, "unlabelled"))
    assert all(c.supervisions[0].text is None and c.has_features for c in unlabelled)


def test_stored_features_match_lhotse_fbank(prepared: PreparedCorpus) -> None:
    cut = next(iter(CutSet.from_file(cuts_path(prepared.fbank_dir, prepared.prefix, "dev"))))
    direct = Fbank(FbankConfig(num_filters=80)).extract(cut.load_audio(), 16000)
    # Stored features are lilcom-compressed: close, not identical.
    np.testing.assert_allclose(cut.load_features(), direct, atol=0.05)


def test_existing_part_is_skipped(prepared: PreparedCorpus) -> None:
    path = cuts_path(prepared.fbank_dir, prepared.prefix, "dev")
    before = path.stat().st_mtime_ns
    compute_fbank(prepared.manifest_dir, prepared.prefix, ["dev"], prepared.fbank_dir, extractor="lhotse")
    assert path.stat().st_mtime_ns == before


def test_kaldi_dir_at_8k_and_22k_gets_16k_features(kaldi_dir: Path, tmp_path: Path) -> None:
    prepare_kaldi_manifests(kaldi_dir, "train", tmp_path / "m", "mine")
    (path,) = compute_fbank(
        tmp_path / "m", "mine", ["train"], tmp_path / "fbank", num_jobs=1, extractor="lhotse"
    )
    cuts = CutSet.from_file(path).to_eager()
    assert sorted(cuts.ids) == ["a", "b", "c1", "c2"]
    for cut in cuts:
        assert cut.sampling_rate == 16000
        assert cut.load_features().shape == (cut.num_frames, 80)
    assert cuts["c1"].num_frames == 130


def test_missing_manifest_names_it(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="synth_recordings_train.jsonl.gz"):
        compute_fbank(tmp_path, "synth", ["train"], tmp_path / "fbank")
    assert not cuts_path(tmp_path / "fbank", "synth", "train").exists()


def test_unreadable_audio_is_a_counted_skip(
    prepared: PreparedCorpus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cuts = CutSet.from_file(cuts_path(prepared.fbank_dir, prepared.prefix, "dev")).drop_features().to_eager()
    rec = cuts[0].recording
    gone = fastcopy(rec, sources=[fastcopy(rec.sources[0], source=str(tmp_path / "gone.flac"))])
    broken = fastcopy(cuts[0], recording=gone)
    cuts = CutSet.from_cuts([broken, *list(cuts)[1:]])
    with caplog.at_level(logging.WARNING):
        out = extract_features(cuts, make_fbank_extractor("lhotse"), tmp_path / "feats")
    assert sorted(out.ids) == sorted(list(cuts.ids)[1:])
    assert "1 of 4 cuts skipped" in caplog.text and broken.id in caplog.text


@pytest.mark.slow
def test_parallel_jobs_give_the_same_cuts_in_order(prepared: PreparedCorpus, tmp_path: Path) -> None:
    (path,) = compute_fbank(
        prepared.manifest_dir, prepared.prefix, ["train"], tmp_path, num_jobs=2, extractor="lhotse"
    )
    serial = CutSet.from_file(cuts_path(prepared.fbank_dir, prepared.prefix, "train")).to_eager()
    parallel = CutSet.from_file(path).to_eager()
    assert list(parallel.ids) == list(serial.ids)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.load_features(), b.load_features())
