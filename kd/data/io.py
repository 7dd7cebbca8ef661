"""Manifest naming and atomic writes.

Every file a later stage trusts is written under a temporary name in the same directory and renamed into
place only once complete, so an interrupted stage never leaves a half-written manifest behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet, load_manifest_lazy

from kd.data.errors import DataError, MissingFileError


def manifest_path(manifest_dir: str | Path, prefix: str, kind: str, part: str) -> Path:
    """``<manifest_dir>/<prefix>_<kind>_<part>.jsonl.gz``; ``kind`` is ``recordings`` or ``supervisions``."""
    return Path(manifest_dir) / f"{prefix}_{kind}_{part}.jsonl.gz"


def cuts_path(fbank_dir: str | Path, prefix: str, part: str) -> Path:
    """``<fbank_dir>/<prefix>_cuts_<part>.jsonl.gz``: the CutSet with features of one part."""
    return Path(fbank_dir) / f"{prefix}_cuts_{part}.jsonl.gz"


def feats_dir(fbank_dir: str | Path, prefix: str, part: str) -> Path:
    """``<fbank_dir>/<prefix>_feats_<part>/``: the lilcom archives holding one part's features."""
    return Path(fbank_dir) / f"{prefix}_feats_{part}"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` when the block succeeds.

    The temporary name keeps the full suffix (e.g. ``.jsonl.gz``) because lhotse picks the format from it.
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp{os.getpid()}.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def manifests_exist(manifest_dir: str | Path, prefix: str, part: str) -> bool:
    return all(
        manifest_path(manifest_dir, prefix, kind, part).is_file() for kind in ("recordings", "supervisions")
    )


def save_manifests(
    recordings: RecordingSet, supervisions: SupervisionSet, manifest_dir: str | Path, prefix: str, part: str
) -> tuple[Path, Path]:
    """Writes the recordings and supervisions of one part; both appear only once both are complete."""
    rec_path = manifest_path(manifest_dir, prefix, "recordings", part)
    sup_path = manifest_path(manifest_dir, prefix, "supervisions", part)
    with atomic_path(rec_path) as rec_tmp, atomic_path(sup_path) as sup_tmp:
        recordings.to_file(rec_tmp)
        supervisions.to_file(sup_tmp)
    return rec_path, sup_path


def load_manifests(manifest_dir: str | Path, prefix: str, part: str) -> tuple[RecordingSet, SupervisionSet]:
    """Reads one part's recordings and supervisions (eagerly)."""
    sets = []
    for kind in ("recordings", "supervisions"):
        path = manifest_path(manifest_dir, prefix, kind, part)
        if not path.is_file():
            raise MissingFileError(
                f"{path}: manifest not found; run `python -m kd.bin.prepare_manifests` for part {part!r} "
                f"with --prefix {prefix} --output-dir {manifest_dir} first"
            )
        sets.append((RecordingSet if kind == "recordings" else SupervisionSet).from_file(path).to_eager())
    return sets[0], sets[1]


def load_cuts(path: str | Path) -> CutSet:
    """Opens a cuts manifest lazily (the samplers stream it), with a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: cuts manifest not found; run `python -m kd.bin.compute_fbank` first")
    if not path.name.endswith((".jsonl", ".jsonl.gz")):
        # lhotse streams JSON lines only; a targets run's <name>_targets.json is its settings, not cuts
        raise DataError(
            f"{path}: not a cuts manifest (those are .jsonl or .jsonl.gz; the cuts of targets are "
            "<name>_targets.jsonl.gz beside <name>_targets.json)"
        )
    return load_manifest_lazy(path)
