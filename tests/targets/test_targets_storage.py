"""The lossless array archive: arrays attached to cuts come back bit for bit, damage is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from lhotse import CutSet
from lhotse.cut import MonoCut
from lhotse.supervision import SupervisionSegment

from kd.targets.storage import (
    NumpyArchiveReader,
    NumpyArchiveWriter,
    attach_arrays,
    cut_meta,
    index_dtype,
    is_unlabelled,
    load_arrays,
)
from kd.targets.validation import TargetsError


def _cut(cut_id: str, text: str | None = "A B") -> MonoCut:
    sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=1.0, text=text)
    return MonoCut(id=cut_id, start=0.0, duration=1.0, channel=0, supervisions=[sup])


def test_archive_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal((7, 3, 4)).astype(np.float16),
        np.array([-np.inf, 0.0, -23.0], dtype=np.float16),
        rng.integers(0, 500, (5, 2)).astype(np.uint16),
        np.zeros((0, 4), dtype=np.uint8),
        np.array(3.5, dtype=np.float32),
    ]
    with NumpyArchiveWriter(tmp_path / "a") as writer:
        keys = [writer.write("k", a) for a in arrays]
        assert writer.offset == sum(a.nbytes for a in arrays)  # raw bytes, no headers
    reader = NumpyArchiveReader(writer.storage_path)
    for key, a in zip(keys, arrays):
        back = reader.read(key)
        assert back.dtype == a.dtype and back.shape == a.shape
        assert back.tobytes() == a.tobytes()
        assert back.flags.writeable
    assert reader.read(keys[0], 2, 5).tobytes() == arrays[0][2:5].tobytes()


def test_truncated_archive_and_bad_key_are_clear_errors(tmp_path):
    with NumpyArchiveWriter(tmp_path / "a") as writer:
        key = writer.write("k", np.ones((4, 4), dtype=np.float16))
    with open(writer.storage_path, "r+b") as f:
        f.truncate(10)
    with pytest.raises(TargetsError, match="truncated target archive"):
        NumpyArchiveReader(writer.storage_path).read(key)
    with pytest.raises(TargetsError, match="malformed"):
        NumpyArchiveReader(writer.storage_path).read("12,float16")
    with pytest.raises(TargetsError, match="not found"):
        NumpyArchiveReader(tmp_path / "missing.kda").read(key)


def test_attached_arrays_survive_the_cuts_manifest(tmp_path):
    arrays = {
        "logprobs": np.arange(24, dtype=np.float16).reshape(2, 3, 4) - 30,
        "ids": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        "rest": np.full((2, 3), -23.0, dtype=np.float16),
    }
    with NumpyArchiveWriter(tmp_path / "enc") as writer:
        cut = attach_arrays(_cut("c1"), writer, "enc_logits", arrays)
    cut = cut.with_custom("kd_targets", {"teacher": "x", "frames": 2, "tokens": [1], "types": ["enc_logits"]})
    CutSet.from_cuts([cut]).to_file(tmp_path / "cuts.jsonl.gz")
    back = CutSet.from_file(tmp_path / "cuts.jsonl.gz")[0]
    loaded = load_arrays(back, "enc_logits")
    for name, a in arrays.items():
        assert loaded[name].dtype == a.dtype and loaded[name].tobytes() == a.tobytes()
    assert cut_meta(back)["frames"] == 2
    with pytest.raises(TargetsError, match="has no pruned targets .*enc_logits"):
        load_arrays(back, "pruned")
    with pytest.raises(ValueError, match="need the arrays"):
        attach_arrays(_cut("c2"), writer, "enc_logits", {"logprobs": arrays["logprobs"]})
    with pytest.raises(TargetsError, match="carries no teacher targets"):
        cut_meta(_cut("c3"))


def test_index_dtype_and_unlabelled_cuts():
    assert index_dtype(255) == np.uint8
    assert index_dtype(256) == np.uint16
    assert index_dtype(70000) == np.uint32
    assert is_unlabelled(_cut("u", text=None))
    assert not is_unlabelled(_cut("l", text=""))  # an empty transcript is a label (no tokens)
