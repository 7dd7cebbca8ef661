"""Speed-perturbed copies of a part: ids, durations, stored features, resumability and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lhotse import CutSet, Fbank, FbankConfig

from kd.bin import perturb_speed
from kd.data.errors import DataError, MissingFileError
from kd.data.features import compute_fbank
from kd.data.io import cuts_path, feats_dir
from kd.data.kaldi import prepare_kaldi_manifests
from kd.data.perturb import speed_perturb_part


@pytest.fixture
def fbank_dir(kaldi_dir: Path, tmp_path: Path) -> Path:
    """compute_fbank's output for the Kaldi dir (8, 16 and 22.05 kHz audio), part ``train``."""
    prepare_kaldi_manifests(kaldi_dir, "train", tmp_path / "m", "mine")
    compute_fbank(tmp_path / "m", "mine", ["train"], tmp_path / "fbank", extractor="lhotse")
    return tmp_path / "fbank"


def test_copies_follow_the_part_with_their_own_features(fbank_dir: Path) -> None:
    out = speed_perturb_part(fbank_dir, "mine", "train", [0.9, 1.1], extractor="lhotse")
    assert out == cuts_path(fbank_dir, "mine", "train_sp")
    source = CutSet.from_file(cuts_path(fbank_dir, "mine", "train")).to_eager()
    cuts = CutSet.from_file(out).to_eager()
    ids = ["a", "b", "c1", "c2"]
    assert list(cuts.ids) == ids + [f"{i}_sp0.9" for i in ids] + [f"{i}_sp1.1" for i in ids]
    for cut in source:
        assert cuts[cut.id].features.storage_path == cut.features.storage_path
        for factor in (0.9, 1.1):
            copy = cuts[f"{cut.id}_sp{factor}"]
            assert copy.duration == pytest.approx(cut.duration / factor, abs=0.01)
            assert copy.supervisions[0].text == cut.supervisions[0].text
            assert Path(copy.features.storage_path).is_relative_to(feats_dir(fbank_dir, "mine", "train_sp"))
            feats = copy.load_features()
            assert feats.shape == (copy.num_frames, 80)
            assert copy.num_frames == pytest.approx(cut.num_frames / factor, abs=2)
            direct = Fbank(FbankConfig(num_filters=80)).extract(copy.load_audio(), 16000)
            # Stored features are lilcom-compressed: close, not identical.
            np.testing.assert_allclose(feats, direct, atol=0.05)


def test_existing_output_is_kept_and_checked_unless_forced(fbank_dir: Path) -> None:
    out = speed_perturb_part(fbank_dir, "mine", "train", [1.1], extractor="lhotse")
    before = out.stat().st_mtime_ns
    speed_perturb_part(fbank_dir, "mine", "train", [1.1], extractor="lhotse")
    assert out.stat().st_mtime_ns == before
    with pytest.raises(DataError, match=r"speeds \[1.1\], not \[0.9\]; rerun with --force"):
        speed_perturb_part(fbank_dir, "mine", "train", [0.9], extractor="lhotse")
    speed_perturb_part(fbank_dir, "mine", "train", [0.9], extractor="lhotse", force=True)
    assert out.stat().st_mtime_ns != before
    assert list(CutSet.from_file(out).ids)[-1] == "c2_sp0.9"


@pytest.mark.parametrize("factors", [[], [1.0], [0.9, -1.1]])
def test_bad_factors_are_errors(fbank_dir: Path, factors: list[float]) -> None:
    with pytest.raises(DataError, match="factors"):
        speed_perturb_part(fbank_dir, "mine", "train", factors)


def test_missing_part_names_its_cuts_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="mine_cuts_train.jsonl.gz.*compute_fbank"):
        speed_perturb_part(tmp_path, "mine", "train", [0.9])


def test_cli_reports_bad_input_with_exit_status_1(
    fbank_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as e:
        perturb_speed.run_main(
            perturb_speed.main, ["--fbank-dir", str(fbank_dir), "--prefix", "mine", "--part", "dev"]
        )
    assert e.value.code == 1
    assert "mine_cuts_dev.jsonl.gz: cuts manifest not found" in capsys.readouterr().err
