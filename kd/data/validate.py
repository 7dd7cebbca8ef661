"""Consistency checks of manifests before later stages trust them.

Each check returns a list of problems, one line each, naming the manifest file and the recording,
supervision or cut; an empty list means the manifest is fine. Checks read manifest fields and test that
files exist, never decoding audio or features, so they run in seconds on a full corpus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet
from lhotse.audio import Recording

from kd.data.features import FRAME_SHIFT, NUM_MEL_BINS, SAMPLING_RATE
from kd.data.tokenizer import Tokenizer

_DURATION_TOLERANCE = 0.025  # seconds; lhotse rounds durations to whole samples and frames


def _missing_audio(rec: Recording) -> str | None:
    for source in rec.sources:
        if source.type == "file" and not Path(source.source).is_file():
            return f"audio file {source.source} is missing"
    return None


def check_recordings(recordings: Iterable[Recording], where: str) -> list[str]:
    """Missing audio files, sample rates other than 16 kHz, non-positive or inconsistent durations."""
    problems = []
    for rec in recordings:
        if (missing := _missing_audio(rec)) is not None:
            problems.append(f"{where}: recording {rec.id}: {missing}")
        if rec.sampling_rate != SAMPLING_RATE:
            problems.append(
                f"{where}: recording {rec.id}: sampling rate {rec.sampling_rate}, expected "
                f"{SAMPLING_RATE} (re-import it; the Kaldi importer resamples)"
            )
        if rec.duration <= 0:
            problems.append(f"{where}: recording {rec.id}: duration {rec.duration}")
        elif abs(rec.num_samples / rec.sampling_rate - rec.duration) > _DURATION_TOLERANCE:
            problems.append(
                f"{where}: recording {rec.id}: {rec.num_samples} samples do not match duration {rec.duration}"
            )
    return problems


def check_supervisions(
    supervisions: SupervisionSet, recordings: RecordingSet, where: str, tokenizer: Tokenizer | None = None
) -> list[str]:
    """Supervisions pointing to unknown recordings or outside them, empty transcripts, unknown characters.

    A supervision with ``text`` None is unlabelled and fine; an empty or blank string is a problem.
    """
    problems = []
    durations = {r.id: r.duration for r in recordings}
    seen = set()
    for sup in supervisions:
        if sup.id in seen:
            problems.append(f"{where}: supervision {sup.id} appears twice")
        seen.add(sup.id)
        if sup.recording_id not in durations:
            problems.append(
                f"{where}: supervision {sup.id}: recording {sup.recording_id} is not in the recordings"
            )
        elif (
            sup.duration <= 0 or sup.start < 0 or sup.end > durations[sup.recording_id] + _DURATION_TOLERANCE
        ):
            problems.append(
                f"{where}: supervision {sup.id}: [{sup.start}, {sup.end}] s is not inside its "
                f"recording ({durations[sup.recording_id]} s)"
            )
        problems.extend(_check_text(sup.id, sup.text, where, tokenizer))
    return problems


def _check_text(utt: str, text: str | None, where: str, tokenizer: Tokenizer | None) -> list[str]:
    if text is None:
        return []
    if not text.strip():
        return [
            f"{where}: {utt}: empty transcript (remove the utterance, or set text to null for unlabelled)"
        ]
    if tokenizer is not None and (chars := tokenizer.unknown_chars(text)):
        return [f"{where}: {utt}: characters {''.join(sorted(chars))!r} are not in {tokenizer.model_path}"]
    return []


def check_cuts(
    cuts: CutSet, where: str, tokenizer: Tokenizer | None = None, check_audio: bool = True
) -> list[str]:
    """Cuts with missing audio or feature archives, wrong rate or feature shape, bad durations or texts."""
    problems = []
    seen = set()
    for cut in cuts:
        if cut.id in seen:
            problems.append(f"{where}: cut {cut.id} appears twice")
        seen.add(cut.id)
        if cut.duration <= 0:
            problems.append(f"{where}: cut {cut.id}: duration {cut.duration}")
        if cut.sampling_rate != SAMPLING_RATE:
            problems.append(
                f"{where}: cut {cut.id}: sampling rate {cut.sampling_rate}, expected {SAMPLING_RATE}"
            )
        if check_audio and cut.has_recording and (missing := _missing_audio(cut.recording)) is not None:
            problems.append(f"{where}: cut {cut.id}: {missing}")
        if cut.has_features:
            problems.extend(_check_features(cut, where))
        for sup in cut.supervisions:
            problems.extend(_check_text(sup.id, sup.text, where, tokenizer))
            if sup.start < -_DURATION_TOLERANCE or sup.end > cut.duration + _DURATION_TOLERANCE:
                problems.append(f"{where}: cut {cut.id}: supervision {sup.id} lies outside the cut")
    return problems


def _check_features(cut, where: str) -> list[str]:
    feats = cut.features
    problems = []
    storage = Path(feats.storage_path)
    if feats.storage_type == "lilcom_chunky" and not storage.is_file():
        problems.append(f"{where}: cut {cut.id}: feature archive {storage} is missing (rerun compute_fbank)")
    if feats.num_features != NUM_MEL_BINS:
        problems.append(f"{where}: cut {cut.id}: {feats.num_features}-dim features, expected {NUM_MEL_BINS}")
    if not math.isclose(feats.frame_shift, FRAME_SHIFT):
        problems.append(f"{where}: cut {cut.id}: frame shift {feats.frame_shift}, expected {FRAME_SHIFT}")
    expected = round(cut.duration / FRAME_SHIFT)
    if abs(cut.num_frames - expected) > 2:
        problems.append(
            f"{where}: cut {cut.id}: {cut.num_frames} frames for {cut.duration} s (expected ~{expected})"
        )
    return problems
