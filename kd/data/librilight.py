"""Manifests for Libri-Light's unlabelled audio, via lhotse's ``librilight`` recipe.

Libri-Light's layout is ``<corpus-dir>/<subset>/<speaker>/<book>/<file>.flac`` with a ``<file>.json`` next
to each flac holding at least ``speaker`` and ``voice_activity`` (a list of ``[start, end]`` seconds). Every
voice-activity segment becomes a supervision without text, which is how downstream code recognises
unlabelled data.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet
from lhotse.audio.utils import AudioLoadingError
from lhotse.recipes import librilight

from kd.data.errors import AudioError, CorpusLayoutError
from kd.data.io import manifests_exist, save_manifests

log = logging.getLogger(__name__)

LAYOUT = (
    "<corpus-dir>/<subset>/<speaker>/<book>/<file>.flac with <file>.json next to it "
    '({"speaker": ..., "voice_activity": [[start, end], ...], ...})'
)


def _layout_error(path: Path, problem: str) -> CorpusLayoutError:
    return CorpusLayoutError(f"{path}: {problem}; expected the Libri-Light layout {LAYOUT}")


def check_librilight_part(part_dir: Path) -> int:
    """Checks that every flac of a subset has its metadata json; returns the number of flac files.

    Raises:
        CorpusLayoutError: a missing subset dir, no flac files, a missing or malformed json.
    """
    if not part_dir.is_dir():
        raise _layout_error(part_dir, "no such directory")
    flacs = sorted(part_dir.rglob("*.flac"))
    if not flacs:
        raise _layout_error(part_dir, "no .flac files")
    for flac in flacs:
        if len(flac.relative_to(part_dir).parts) != 3:
            raise _layout_error(flac, "audio file in the wrong place")
        meta_path = flac.with_suffix(".json")
        if not meta_path.is_file():
            raise _layout_error(meta_path, "missing metadata file (restore it, or delete its flac)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise _layout_error(meta_path, f"not valid JSON ({e})") from e
        if "speaker" not in meta or "voice_activity" not in meta:
            raise _layout_error(meta_path, "needs the keys 'speaker' and 'voice_activity'")
    return len(flacs)


def prepare_librilight_part(
    corpus_dir: Path, part: str, num_jobs: int = 1
) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings and voice-activity supervisions (no text) of one Libri-Light subset."""
    if part not in librilight.LIBRILIGHT:
        raise CorpusLayoutError(
            f"{corpus_dir / part}: lhotse's Libri-Light recipe knows the subsets "
            f"{list(librilight.LIBRILIGHT)}, not {part!r}"
        )
    num_files = check_librilight_part(corpus_dir / part)
    # The public prepare_librilight() insists on all three subsets being present; its per-subset worker
    # prepares just the one asked for.
    try:
        recordings, supervisions = librilight._prepare_subset(part, corpus_dir, num_jobs)
    except AudioLoadingError as e:
        raise AudioError(
            f"{corpus_dir / part}: an audio file cannot be read: {str(e).splitlines()[0]} "
            "Re-create that file, or delete it together with its json"
        ) from e
    log.info(
        "%s: %d recordings (of %d flac files), %d voice-activity segments",
        corpus_dir / part,
        len(recordings),
        num_files,
        len(supervisions),
    )
    return recordings, supervisions


def prepare_librilight_manifests(
    corpus_dir: str | Path,
    parts: list[str],
    output_dir: str | Path,
    prefix: str,
    num_jobs: int = 1,
    force: bool = False,
) -> None:
    """Writes ``<prefix>_{recordings,supervisions}_<part>.jsonl.gz`` per subset, skipping existing ones."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise _layout_error(corpus_dir, "no such corpus directory")
    for part in parts:
        if manifests_exist(output_dir, prefix, part) and not force:
            log.info("%s: manifests of part %s exist, skipping", output_dir, part)
            continue
        recordings, supervisions = prepare_librilight_part(corpus_dir, part, num_jobs)
        save_manifests(recordings, supervisions, output_dir, prefix, part)
