"""Decoding with onnxruntime: feature batches through the (streaming) encoder graph and a numpy search.

Streaming feeds windows exactly as :func:`kd.decode.streaming_greedy_search` does: window k covers feature
frames [k * S * C, k * S * C + S * C + P) (C = chunk_size, S = subsampling factor, P =
streaming_pad_frames), the features padded at the end with log(1e-10) so the last window is whole, and the
search advances after every window.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from kd.data.dataset import PAD_VALUE
from kd.decode.streaming import LOG_EPS
from kd.export.inputs import Utterance
from kd.export.onnx_model import OnnxTransducer
from kd.export.search import GreedySearch, ModifiedBeamSearch

METHODS = ("greedy_search", "modified_beam_search")


@dataclass
class SearchOptions:
    """method: one of :data:`METHODS`; streaming: chunk-wise through the streaming encoder; beam: of
    modified beam search; max_sym_per_frame: symbols emitted per frame at most, in both methods."""

    method: str = "greedy_search"
    streaming: bool = False
    beam: int = 4
    max_sym_per_frame: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown decoding method {self.method!r}; choose one of {list(METHODS)}")

    @property
    def tag(self) -> str:
        """Result-file name of the method, e.g. ``streaming_modified_beam_search_beam_4``,
        ``greedy_search_max_sym_2`` (as kd.bin.decode names its results)."""
        name = f"{self.method}_beam_{self.beam}" if self.method == "modified_beam_search" else self.method
        if self.max_sym_per_frame != 1:
            name = f"{name}_max_sym_{self.max_sym_per_frame}"
        return f"streaming_{name}" if self.streaming else name


def decode_features(
    model: OnnxTransducer, features: np.ndarray, feature_lens: np.ndarray, options: SearchOptions
) -> list[list[int]]:
    """Token ids of the best hypothesis per utterance.

    Args:
        model: the onnxruntime transducer.
        features: (B, T, F) float32 features, frames past a length are padding.
        feature_lens: (B,) int64 valid frames, each >= 7 (one encoder frame).
        options: the search.
    """
    batch_size = features.shape[0]
    if options.method == "greedy_search":
        search: GreedySearch | ModifiedBeamSearch = GreedySearch(model, batch_size, options.max_sym_per_frame)
    else:
        search = ModifiedBeamSearch(model, batch_size, options.beam, options.max_sym_per_frame)
    if not options.streaming:
        search.advance(*model.encode(features, feature_lens))
        return search.results()
    states = model.init_streaming_states(batch_size)  # first: refuses a model that cannot stream
    meta = model.metadata
    shift = meta.chunk_size * meta.subsampling_factor
    window = shift + meta.streaming_pad_frames
    receptive_field = meta.subsampling_factor + meta.streaming_pad_frames  # feature frames per encoder frame
    # Window k yields encoder frames while some utterance has a receptive field left from its start.
    num_windows = (int(feature_lens.max()) - receptive_field) // shift + 1
    needed = (num_windows - 1) * shift + window
    if features.shape[1] < needed:
        pad = np.full((batch_size, needed - features.shape[1], features.shape[2]), LOG_EPS, dtype=np.float32)
        features = np.concatenate((features, pad), axis=1)
    for k in range(num_windows):
        start = k * shift
        x_lens = np.clip(feature_lens - start, 0, window)
        out, out_lens, states = model.encode_chunk(features[:, start : start + window], x_lens, states)
        search.advance(out, out_lens)
    return search.results()


def batches(utterances: Iterable[Utterance], max_frames: int) -> Iterator[list[Utterance]]:
    """Consecutive utterances in groups of at most ``max_frames`` feature frames (at least one each)."""
    batch: list[Utterance] = []
    frames = 0
    for utt in utterances:
        if batch and frames + len(utt.features) > max_frames:
            yield batch
            batch, frames = [], 0
        batch.append(utt)
        frames += len(utt.features)
    if batch:
        yield batch


def collate(batch: list[Utterance], feature_dim: int, min_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, F) float32 features padded with the training pad value, and (B,) int64 lengths.

    Raises:
        ValueError: an utterance's features are not (T, feature_dim), or shorter than ``min_frames``.
    """
    for utt in batch:
        if utt.features.ndim != 2 or utt.features.shape[1] != feature_dim:
            raise ValueError(
                f"{utt.id}: features of shape {utt.features.shape}, but the model reads (T, {feature_dim})"
            )
        if len(utt.features) < min_frames:
            raise ValueError(
                f"{utt.id}: {len(utt.features)} feature frames, fewer than the {min_frames} that one encoder "
                "frame needs; drop utterances this short"
            )
    lens = np.array([len(u.features) for u in batch], dtype=np.int64)
    features = np.full((len(batch), int(lens.max()), feature_dim), PAD_VALUE, dtype=np.float32)
    for i, utt in enumerate(batch):
        features[i, : lens[i]] = utt.features
    return features, lens


def decode_utterances(
    model: OnnxTransducer,
    utterances: Iterable[Utterance],
    options: SearchOptions,
    max_frames: int = 30000,
) -> tuple[list[tuple[str, str | None, list[int]]], dict[str, float]]:
    """Decodes utterances in batches of at most ``max_frames`` feature frames (features are dropped once
    decoded, so a long test set is never held in memory).

    Returns:
        (utterance id, its transcript or None, token ids) in input order, and ``{"audio_seconds",
        "decode_seconds"}``: decode seconds count the graphs and the search, not reading audio or computing
        features, so their ratio is the model's real-time factor (as :func:`kd.decode.decode_dataset`
        measures it).
    """
    meta = model.metadata
    min_frames = meta.subsampling_factor + meta.streaming_pad_frames
    results: list[tuple[str, str | None, list[int]]] = []
    audio_seconds = decode_seconds = 0.0
    for batch in batches(utterances, max_frames):
        features, lens = collate(batch, meta.feature_dim, min_frames)
        start = time.perf_counter()
        hyps = decode_features(model, features, lens, options)
        decode_seconds += time.perf_counter() - start
        audio_seconds += float(lens.sum()) * meta.frame_shift
        results.extend((utt.id, utt.text, hyp) for utt, hyp in zip(batch, hyps))
    return results, {"audio_seconds": audio_seconds, "decode_seconds": decode_seconds}
