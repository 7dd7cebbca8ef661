"""Manifests for corpora in LibriSpeech's on-disk layout (the real LibriSpeech and the synthetic corpus).

Labelled parts go through ``lhotse.recipes.prepare_librispeech``; this module checks the layout first, and
turns what that recipe does silently (drop an utterance whose flac is missing) or obscurely (crash on an
empty transcript) into counted, logged skips and errors that name the file.

Unlabelled parts hold flac files only. Each recording gets one supervision spanning it, with
``text=None``: downstream code treats a supervision without text as unlabelled (an empty string ``""`` is
never written, and validation reports it as an empty transcript).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio.utils import AudioLoadingError
from lhotse.recipes import prepare_librispeech
from tqdm.auto import tqdm

from kd.data.errors import AudioError, CorpusLayoutError, TranscriptError
from kd.data.io import manifests_exist, save_manifests

log = logging.getLogger(__name__)

LAYOUT = (
    "<corpus-dir>/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utterance>.flac, with the transcripts of a "
    "chapter in <corpus-dir>/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt "
    "(one '<utterance-id> <WORDS>' line per utterance)"
)
_SHOWN = 5  # how many offending files an error or warning lists before summarising the rest


@dataclass
class PartScan:
    """What a labelled part's transcript files promise, checked against the disk."""

    num_utterances: int = 0
    missing_audio: list[Path] = field(default_factory=list)


def _layout_error(path: Path, problem: str) -> CorpusLayoutError:
    return CorpusLayoutError(f"{path}: {problem}; expected the LibriSpeech layout {LAYOUT}")


def scan_labelled_part(part_dir: Path) -> PartScan:
    """Checks the layout and transcripts of one labelled part and lists utterances whose flac is missing.

    Raises:
        CorpusLayoutError: the part dir is missing, holds no transcripts, or files are misplaced.
        TranscriptError: a transcript line is blank or has an utterance id but no words.
    """
    if not part_dir.is_dir():
        raise _layout_error(part_dir, "no such directory")
    trans_files = sorted(part_dir.rglob("*.trans.txt"))
    if not trans_files:
        raise _layout_error(
            part_dir,
            "no *.trans.txt transcript files (pass a part without transcripts with --unlabelled-parts)",
        )
    scan = PartScan()
    empty: list[str] = []
    for trans in trans_files:
        rel = trans.relative_to(part_dir).parts
        if len(rel) != 3 or rel[2] != f"{rel[0]}-{rel[1]}.trans.txt":
            raise _layout_error(trans, "transcript file in the wrong place or wrongly named")
        utt_prefix = f"{rel[0]}-{rel[1]}-"
        for lineno, line in enumerate(trans.read_text().splitlines(), start=1):
            fields = line.split(maxsplit=1)
            if not fields:
                raise TranscriptError(f"{trans}:{lineno}: blank line; delete it")
            if not fields[0].startswith(utt_prefix):
                raise _layout_error(
                    trans, f"line {lineno}: utterance id {fields[0]!r} does not start with {utt_prefix!r}"
                )
            if len(fields) == 1:
                empty.append(f"{trans}:{lineno} ({fields[0]})")
                continue
            scan.num_utterances += 1
            audio = trans.parent / f"{fields[0]}.flac"
            if not audio.is_file():
                scan.missing_audio.append(audio)
    if empty:
        raise TranscriptError(
            f"{len(empty)} utterance(s) in {part_dir} have an empty transcript, "
            f"e.g. {', '.join(empty[:_SHOWN])}; "
            "add the words, delete the lines (and their flac files), or move the audio to an unlabelled part"
        )
    return scan


def prepare_labelled_part(
    corpus_dir: Path, part: str, num_jobs: int = 1
) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings and supervisions of one transcribed part, via lhotse's LibriSpeech recipe.

    Utterances listed in a transcript whose flac is missing are skipped, counted and logged.

    Raises:
        CorpusLayoutError: wrong layout, or not one listed utterance has its audio.
        TranscriptError: a blank line or an empty transcript.
        AudioError: a flac file that cannot be decoded.
    """
    part_dir = corpus_dir / part
    scan = scan_labelled_part(part_dir)
    if len(scan.missing_audio) == scan.num_utterances:
        raise _layout_error(
            part_dir,
            f"none of the {scan.num_utterances} transcribed utterances has its flac file, e.g. "
            f"{scan.missing_audio[0]} is missing",
        )
    if scan.missing_audio:
        log.warning(
            "%s: skipping %d of %d utterances whose flac file is missing, e.g. %s",
            part_dir,
            len(scan.missing_audio),
            scan.num_utterances,
            ", ".join(str(p) for p in scan.missing_audio[:_SHOWN]),
        )
    try:
        manifests = prepare_librispeech(corpus_dir, dataset_parts=[part], output_dir=None, num_jobs=num_jobs)
    except AudioLoadingError as e:
        raise AudioError(
            f"{part_dir}: an audio file cannot be read: {str(e).splitlines()[0]} "
            "Re-create that file, or delete it together with its line in the .trans.txt file"
        ) from e
    recordings, supervisions = manifests[part]["recordings"], manifests[part]["supervisions"]
    expected = scan.num_utterances - len(scan.missing_audio)
    if len(recordings) != expected:
        raise AudioError(f"{part_dir}: lhotse prepared {len(recordings)} recordings, expected {expected}")
    log.info(
        "%s: %d utterances (%d skipped for missing audio)", part_dir, len(recordings), len(scan.missing_audio)
    )
    return recordings, supervisions


def _unlabelled_item(path: Path, speaker: str) -> tuple[Recording, SupervisionSegment]:
    try:
        recording = Recording.from_file(path, recording_id=path.name.removesuffix(".flac"))
    except AudioLoadingError as e:
        raise AudioError(
            f"{path}: cannot read this audio file ({str(e).splitlines()[0]}); re-create or delete it"
        ) from e
    supervision = SupervisionSegment(
        id=recording.id,
        recording_id=recording.id,
        start=0.0,
        duration=recording.duration,
        channel=recording.channel_ids[0],
        speaker=speaker,
        language="English",
        text=None,
    )
    return recording, supervision


def prepare_unlabelled_part(
    corpus_dir: Path, part: str, num_jobs: int = 1
) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings of an untranscribed part, each with one text-less supervision covering all of it.

    Raises:
        CorpusLayoutError: the part dir is missing, holds no flac files, or files are misplaced.
        AudioError: a flac file that cannot be decoded.
    """
    part_dir = corpus_dir / part
    if not part_dir.is_dir():
        raise _layout_error(part_dir, "no such directory")
    flacs = sorted(part_dir.rglob("*.flac"))
    if not flacs:
        raise _layout_error(part_dir, "no .flac files")
    speakers = []
    for flac in flacs:
        rel = flac.relative_to(part_dir).parts
        if len(rel) != 3 or not rel[2].startswith(f"{rel[0]}-{rel[1]}-"):
            raise _layout_error(flac, "audio file in the wrong place or wrongly named")
        speakers.append(rel[0])
    with ThreadPoolExecutor(max(1, num_jobs)) as ex:
        items = list(
            tqdm(
                ex.map(_unlabelled_item, flacs, speakers),
                total=len(flacs),
                desc=f"Reading {part}",
                leave=False,
            )
        )
    log.info("%s: %d unlabelled recordings", part_dir, len(items))
    return (
        RecordingSet.from_recordings(r for r, _ in items),
        SupervisionSet.from_segments(s for _, s in items),
    )


def prepare_librispeech_manifests(
    corpus_dir: str | Path,
    parts: list[str],
    output_dir: str | Path,
    prefix: str,
    unlabelled_parts: tuple[str, ...] | list[str] = (),
    num_jobs: int = 1,
    force: bool = False,
) -> None:
    """Writes ``<prefix>_{recordings,supervisions}_<part>.jsonl.gz`` for every part into ``output_dir``.

    A part whose two manifests already exist is skipped unless ``force``.
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise _layout_error(corpus_dir, "no such corpus directory")
    jobs = [(p, prepare_labelled_part) for p in parts] + [
        (p, prepare_unlabelled_part) for p in unlabelled_parts
    ]
    for part, prepare in jobs:
        if manifests_exist(output_dir, prefix, part) and not force:
            log.info("%s: manifests of part %s exist, skipping", output_dir, part)
            continue
        recordings, supervisions = prepare(corpus_dir, part, num_jobs)
        save_manifests(recordings, supervisions, output_dir, prefix, part)
