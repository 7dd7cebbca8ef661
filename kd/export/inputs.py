"""Utterances to decode with an exported model: features from a CutSet or from audio files.

Features are the training features (:mod:`kd.data.features`): lhotse's 80-bin Fbank on 16 kHz audio. Cuts
with stored features are read as stored; cuts without, and audio files, are computed here with lhotse's
Fbank (not kaldifeat, which may be absent on a device).

Bad input:
- audio at another sampling rate is resampled to the model's rate (lhotse's resampling), with a log line;
- multi-channel audio is refused with an error naming the file (or cut): a down-mix is a choice (average,
  one channel, beamforming) the caller should make, e.g. ``sox in.wav -c 1 mono.wav``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse import CutSet, Recording
from lhotse.cut import Cut

from kd.data.dataset import cut_text
from kd.data.features import make_fbank_extractor

log = logging.getLogger(__name__)


@dataclass
class Utterance:
    """One utterance: ``features`` (T, F) float32 log-mel frames; ``text`` its transcript or None."""

    id: str
    features: np.ndarray
    text: str | None


def _check_mono(num_channels: int, what: str) -> None:
    if num_channels != 1:
        raise ValueError(
            f"{what} has {num_channels} channels; only mono audio is decoded: down-mix it first "
            "(e.g. `sox in.wav -c 1 mono.wav`) or pick one channel"
        )


def audio_utterance(path: str | Path, sampling_rate: int) -> Utterance:
    """Fbank features of a mono audio file (any format lhotse reads), resampled to ``sampling_rate``.

    Raises:
        ValueError: the file has more than one channel.
    """
    recording = Recording.from_file(path)
    _check_mono(recording.num_channels, str(path))
    if recording.sampling_rate != sampling_rate:
        log.info("%s: resampling %d Hz -> %d Hz", path, recording.sampling_rate, sampling_rate)
        recording = recording.resample(sampling_rate)
    features = make_fbank_extractor("lhotse").extract(recording.load_audio(), sampling_rate)
    return Utterance(str(path), features.astype(np.float32), None)


def cut_utterance(cut: Cut, sampling_rate: int, where: str) -> Utterance:
    """A cut's stored features, or Fbank features of its audio (resampled to ``sampling_rate``).

    Raises:
        ValueError: the cut has neither features nor audio, or its audio has more than one channel.
    """
    text = cut_text(cut) or None
    if cut.has_features:
        return Utterance(cut.id, cut.load_features().astype(np.float32), text)
    if not cut.has_recording:
        raise ValueError(f"cut {cut.id} in {where} has neither features nor audio")
    _check_mono(cut.num_channels, f"cut {cut.id} in {where}")
    if cut.sampling_rate != sampling_rate:
        log.info("cut %s: resampling %d Hz -> %d Hz", cut.id, cut.sampling_rate, sampling_rate)
        cut = cut.resample(sampling_rate)
    features = cut.compute_features(make_fbank_extractor("lhotse"))
    return Utterance(cut.id, features.astype(np.float32), text)


def cuts_utterances(path: str | Path, sampling_rate: int) -> Iterator[Utterance]:
    """The utterances of a CutSet file, in manifest order."""
    for cut in CutSet.from_file(path):
        yield cut_utterance(cut, sampling_rate, str(path))
