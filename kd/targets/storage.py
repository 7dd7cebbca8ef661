"""Lossless storage of target arrays attached to cuts.

Arrays are appended, raw and uncompressed, to one archive file per shard and target type
(``kd_numpy_archive``, a lhotse storage backend registered here), and each cut gets a lhotse
:class:`~lhotse.array.Array` manifest per array in its custom fields, as icefall attaches codebook indexes:
``cut.kd_pruned_logprobs.load()`` reads the array back. The storage key ``<offset>:<dtype>:<shape>``
(e.g. ``1024:<f2:120x5x8``) holds everything needed to read it, so the archive has no headers and a read
is one seek. lhotse's lilcom writers are lossy and its HDF5 writer needs h5py, hence this backend; importing
this module (the target loader does) registers it.

Per cut, the custom field :data:`META_FIELD` holds a small JSON dict: ``teacher`` (the teacher id of the
manifest), ``frames`` (teacher encoder frames T), ``tokens`` (the label sequence the lattice targets are
defined on: the reference's tokens, or the hypothesis' for an unlabelled cut), ``types`` (the types
stored), and ``hyp`` (``{"text", "score"}``) when a hypothesis was searched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from lhotse.array import Array
from lhotse.cut import Cut
from lhotse.features.io import FeaturesReader, FeaturesWriter, register_reader, register_writer

from kd.targets.config import STORED_FIELDS
from kd.targets.validation import TargetsError

STORAGE_NAME = "kd_numpy_archive"
ARCHIVE_SUFFIX = ".kda"
META_FIELD = "kd_targets"


def array_field(target_type: str, name: str) -> str:
    """The custom field of a cut that holds one stored array: ``kd_<type>_<name>``."""
    return f"kd_{target_type}_{name}"


def index_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned integer dtype holding 0..max_value (ids and frame/row indexes are stored so)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _key(offset: int, value: np.ndarray) -> str:
    return f"{offset}:{value.dtype.str}:{'x'.join(map(str, value.shape))}"


def _parse_key(key: str) -> tuple[int, np.dtype, tuple[int, ...]]:
    try:
        offset, dtype, shape = key.split(":")
        return int(offset), np.dtype(dtype), tuple(int(n) for n in shape.split("x")) if shape else ()
    except (ValueError, TypeError) as e:
        raise TargetsError(
            f"malformed {STORAGE_NAME} storage key {key!r} (expected offset:dtype:shape)"
        ) from e


@register_writer
class NumpyArchiveWriter(FeaturesWriter):
    """Appends raw arrays to ``<storage_path>`` (suffix ``.kda``); ``write`` returns the storage key.

    Use as a context manager (or call ``close``). ``mode="wb"`` starts a new archive, ``"ab"`` appends.
    """

    name = STORAGE_NAME

    def __init__(self, storage_path: str | Path, mode: str = "wb", *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if mode not in ("wb", "ab"):
            raise ValueError(f"mode must be 'wb' or 'ab', got {mode!r}")
        path = Path(storage_path)
        self._path = path if path.suffix == ARCHIVE_SUFFIX else path.with_name(path.name + ARCHIVE_SUFFIX)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self._path, mode)  # noqa: SIM115 (closed by close() / the context manager)
        self.offset = self.file.tell()

    @property
    def storage_path(self) -> str:
        return str(self._path)

    def write(self, key: str, value: np.ndarray) -> str:
        value = np.asarray(value, order="C")
        offset = self.offset
        self.offset += self.file.write(value.tobytes())
        return _key(offset, value)

    def close(self) -> None:
        self.file.close()

    def __exit__(self, *args: Any) -> None:
        self.close()


@register_reader
class NumpyArchiveReader(FeaturesReader):
    """Reads the arrays of a :class:`NumpyArchiveWriter` archive by storage key."""

    name = STORAGE_NAME

    def __init__(self, storage_path: str | Path, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.storage_path = Path(storage_path)

    def read(
        self, key: str, left_offset_frames: int = 0, right_offset_frames: int | None = None
    ) -> np.ndarray:
        offset, dtype, shape = _parse_key(key)
        nbytes = math.prod(shape) * dtype.itemsize
        try:
            with open(self.storage_path, "rb") as f:
                f.seek(offset)
                data = bytearray(f.read(nbytes))  # a bytearray keeps the array writable for torch
        except FileNotFoundError as e:
            raise TargetsError(
                f"{self.storage_path}: target archive not found; was the targets directory moved? Rerun "
                "`python -m kd.bin.generate_targets`"
            ) from e
        if len(data) != nbytes:
            raise TargetsError(
                f"{self.storage_path}: truncated target archive ({len(data)} of {nbytes} bytes at offset "
                f"{offset}); rerun `python -m kd.bin.generate_targets` to redo the shard"
            )
        array = np.frombuffer(data, dtype=dtype).reshape(shape)
        return array[left_offset_frames:right_offset_frames] if array.ndim else array


def attach_arrays(cut: Cut, writer: FeaturesWriter, target_type: str, arrays: dict[str, np.ndarray]) -> Cut:
    """A copy of ``cut`` with each of ``arrays`` (the stored fields of ``target_type``) written by ``writer``
    and attached as the custom field ``kd_<type>_<name>``."""
    expected = set(STORED_FIELDS[target_type])
    if set(arrays) != expected:
        raise ValueError(f"{target_type} targets need the arrays {sorted(expected)}, got {sorted(arrays)}")
    for name, value in arrays.items():
        cut = cut.with_custom(array_field(target_type, name), writer.store_array(cut.id, value))
    return cut


def load_arrays(cut: Cut, target_type: str) -> dict[str, np.ndarray]:
    """The stored arrays of ``target_type`` attached to ``cut``, by field name.

    Raises:
        TargetsError: the cut has no such targets.
    """
    out = {}
    custom = cut.custom or {}
    for name in STORED_FIELDS[target_type]:
        manifest = custom.get(array_field(target_type, name))
        if not isinstance(manifest, Array):
            stored = (custom.get(META_FIELD) or {}).get("types", [])
            raise TargetsError(
                f"cut {cut.id} has no {target_type} targets (it has {stored}); generate them with "
                f"`python -m kd.bin.generate_targets --types {target_type} ...`"
            )
        out[name] = manifest.load()
    return out


def cut_meta(cut: Cut) -> dict[str, Any]:
    """The per-cut target record (see the module docstring).

    Raises:
        TargetsError: the cut carries no targets.
    """
    meta = (cut.custom or {}).get(META_FIELD)
    if not isinstance(meta, dict):
        raise TargetsError(
            f"cut {cut.id} carries no teacher targets: load the cuts written by "
            "`python -m kd.bin.generate_targets` (<out-dir>/<name>_targets.jsonl.gz)"
        )
    return meta


def is_unlabelled(cut: Cut) -> bool:
    """A cut is unlabelled when none of its supervisions has text (their text is None)."""
    return all(s.text is None for s in cut.supervisions)
