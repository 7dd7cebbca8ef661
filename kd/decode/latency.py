"""Measured latency of a streaming (causal) model, and of a cascaded model's final second pass.

Utterances are decoded one at a time (batch size 1) by :class:`~kd.decode.streaming.StreamingGreedySearch`
(the search behind ``streaming_greedy_search``), and each chunk's step (``encoder.streaming_forward`` and the
greedy search on its frames) is timed. With F the feature frame shift (10 ms):

- ``chunk_ms`` = chunk_size * subsampling_factor * F: the audio a chunk holds (algorithmic);
- ``lookahead_ms`` = ``encoder.streaming_pad_frames`` * F: the audio past a chunk that the subsampling reads
  before the chunk can be encoded (algorithmic);
- ``compute_ms``: the measured wall time of one chunk's step (mean and 90th percentile over all chunks);
- ``first_pass_latency_ms`` = chunk_ms / 2 + lookahead_ms + mean compute_ms: the mean delay from a frame's
  audio to its chunk's output. A frame waits for the rest of its chunk (half a chunk on average, frames
  being spread evenly over it) and the look-ahead, then for the chunk's compute;
- ``final_latency_ms`` (cascaded models): the mean wall time, after the last audio sample, until the second
  pass's hypothesis exists: the last chunk's step, then the non-causal second-pass encoder on all the
  streamed first-pass frames and its greedy search over the whole utterance.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from lhotse import CutSet
from torch import nn

from kd.data.dataset import AsrDataset
from kd.decode.greedy import greedy_search_batch
from kd.decode.streaming import StreamingGreedySearch


@dataclass
class UtteranceTiming:
    """One utterance streamed at batch size 1.

    Attributes:
        chunk_seconds: wall seconds of each chunk's step, in order.
        hyp: the first pass's (streamed) hypothesis, token ids.
        second_pass_seconds: cascaded models: wall seconds of the second-pass encoder and its greedy search
            (None otherwise).
        final_hyp: cascaded models: the second pass's hypothesis (None otherwise).
    """

    chunk_seconds: list[float]
    hyp: list[int]
    second_pass_seconds: float | None = None
    final_hyp: list[int] | None = None


@dataclass
class LatencyStats:
    """Latency of a streaming model over some utterances (the module docstring defines each number).

    Attributes:
        num_utts: utterances measured (the warm-up utterance not counted).
        num_chunks: chunks measured, over all of them.
        chunk_ms, lookahead_ms: algorithmic parts.
        compute_ms_mean, compute_ms_p90: measured compute per chunk.
        first_pass_latency_ms: chunk_ms / 2 + lookahead_ms + compute_ms_mean.
        final_latency_ms: cascaded models only (None otherwise).
    """

    num_utts: int
    num_chunks: int
    chunk_ms: float
    lookahead_ms: float
    compute_ms_mean: float
    compute_ms_p90: float
    first_pass_latency_ms: float
    final_latency_ms: float | None = None

    def summary(self) -> str:
        """One log line."""
        line = (
            f"chunk {self.chunk_ms:.0f} ms + lookahead {self.lookahead_ms:.0f} ms, compute "
            f"{self.compute_ms_mean:.1f} ms/chunk (p90 {self.compute_ms_p90:.1f}): first-pass latency "
            f"{self.first_pass_latency_ms:.1f} ms"
        )
        if self.final_latency_ms is not None:
            line += f", final latency {self.final_latency_ms:.1f} ms"
        return f"{line} ({self.num_utts} utts, {self.num_chunks} chunks)"


def streaming_part(model: nn.Module) -> nn.Module | None:
    """The transducer that streams: a cascaded model's ``first_pass``, or the model itself when its encoder
    is causal; None when neither is causal."""
    first_pass = getattr(model, "first_pass", None)
    candidate = model if first_pass is None else first_pass
    return candidate if getattr(candidate.encoder, "causal", False) else None


def _require_streaming(model: nn.Module) -> nn.Module:
    first = streaming_part(model)
    if first is None:
        raise ValueError(
            "latency is measured on streaming models: the encoder (or a cascaded model's first pass) must be "
            "causal; decode this model without latency measurement"
        )
    return first


def _synchronize(device: torch.device) -> None:
    # CUDA kernels run asynchronously: wait for them so the wall clock covers the work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_utterance(
    model: nn.Module,
    features: torch.Tensor,
    feature_lens: torch.Tensor,
    chunk_size: int | None = None,
    max_sym_per_frame: int = 1,
) -> UtteranceTiming:
    """Streams one utterance chunk by chunk, timing each chunk's step; for a cascaded model (one with a
    ``first_pass``) then runs and times the second pass on the streamed first-pass frames.

    Args:
        model: a causal transducer, or a cascaded one (``first_pass`` causal, ``encoder.second_pass``).
        features: (1, T, F) features.
        feature_lens: (1,) valid frames.
        chunk_size: encoder frames per chunk (default: the encoder's).
        max_sym_per_frame: symbols emitted at most per frame.
    Raises:
        ValueError: when the model does not stream, the batch is not one utterance, or the utterance is too
            short to give an encoder frame.
    """
    first = _require_streaming(model)
    if features.dim() != 3 or features.size(0) != 1:
        raise ValueError(
            f"time_utterance takes one utterance: features (1, T, F), got {tuple(features.shape)}"
        )
    device = features.device
    stream = StreamingGreedySearch(first, features, feature_lens, chunk_size, max_sym_per_frame)
    if stream.num_chunks == 0:
        raise ValueError(f"an utterance of {int(feature_lens[0])} feature frames gives no encoder frame")
    chunk_seconds = []
    outs = []
    for _ in range(stream.num_chunks):
        start = time.perf_counter()
        out, out_lens = stream.step()
        _synchronize(device)
        chunk_seconds.append(time.perf_counter() - start)
        outs.append(out[:, : int(out_lens[0])])
    timing = UtteranceTiming(chunk_seconds, stream.results()[0])
    if first is model:
        return timing
    start = time.perf_counter()
    first_out = torch.cat(outs, dim=1)  # (1, T', D): the frames a two-pass system keeps while streaming
    lens = torch.tensor([first_out.size(1)], device=device)
    second_out = model.encoder.second_pass(first_out, lens)
    final_hyp = greedy_search_batch(model, second_out, lens, max_sym_per_frame)[0]
    _synchronize(device)
    timing.second_pass_seconds = time.perf_counter() - start
    timing.final_hyp = final_hyp
    return timing


def latency_stats(timings: Sequence[UtteranceTiming], chunk_ms: float, lookahead_ms: float) -> LatencyStats:
    """Aggregates per-utterance timings (the module docstring defines each number).

    The 90th percentile interpolates linearly between the sorted chunk times.

    Raises:
        ValueError: when there are no timings, or an utterance has no chunk.
    """
    if not timings or any(not t.chunk_seconds for t in timings):
        raise ValueError("latency_stats needs at least one utterance, each with at least one chunk")
    compute_ms = torch.tensor([s for t in timings for s in t.chunk_seconds], dtype=torch.float64) * 1000.0
    mean = float(compute_ms.mean())
    second = [t.second_pass_seconds for t in timings if t.second_pass_seconds is not None]
    if second and len(second) != len(timings):
        raise ValueError("either every utterance has a second pass timed or none has")
    final_ms = None
    if second:
        # After the last sample: the last chunk's step, then the second pass.
        final_ms = 1000.0 * statistics.mean(t.chunk_seconds[-1] + s for t, s in zip(timings, second))
    return LatencyStats(
        num_utts=len(timings),
        num_chunks=compute_ms.numel(),
        chunk_ms=chunk_ms,
        lookahead_ms=lookahead_ms,
        compute_ms_mean=mean,
        compute_ms_p90=float(compute_ms.quantile(0.9)),
        first_pass_latency_ms=chunk_ms / 2 + lookahead_ms + mean,
        final_latency_ms=final_ms,
    )


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    cuts: CutSet,
    max_utts: int = 20,
    chunk_size: int | None = None,
    max_sym_per_frame: int = 1,
    device: torch.device | str = "cpu",
    frame_shift: float = 0.01,
) -> LatencyStats:
    """Latency of a streaming model on the first ``max_utts`` cuts, decoded one at a time. The first of them
    is decoded once more beforehand, not counted, so one-time costs (allocations, kernel selection) are left
    out; cuts too short for one encoder frame are skipped. Puts ``model`` in eval mode.

    Args:
        model: a causal transducer or a cascaded one (see :func:`time_utterance`), on ``device``.
        cuts: cuts with features, loaded as decoding loads them (:class:`~kd.data.dataset.AsrDataset`).
        max_utts: utterances to measure (fewer when ``cuts`` holds fewer).
        chunk_size: encoder frames per chunk (default: the encoder's).
        max_sym_per_frame: symbols emitted at most per frame.
        device: where to decode.
        frame_shift: seconds per feature frame.
    Raises:
        ValueError: when the model does not stream, ``max_utts`` < 1, or no cut gives an encoder frame.
    """
    first = _require_streaming(model)
    if max_utts < 1:
        raise ValueError(f"max_utts must be >= 1, got {max_utts}")
    model.eval()
    device = torch.device(device)
    dataset = AsrDataset()
    batches = [dataset[CutSet.from_cuts([cut])] for cut in itertools.islice(cuts, max_utts)]
    # A cut too short for one encoder frame has no chunk, so no latency.
    batches = [b for b in batches if int(first.encoder.output_lengths(b["feature_lens"])[0]) > 0]
    if not batches:
        raise ValueError(f"none of the first {max_utts} cuts is long enough to give an encoder frame")
    timings = []
    for i, batch in enumerate([batches[0], *batches]):
        timing = time_utterance(
            model,
            batch["features"].to(device),
            batch["feature_lens"].to(device),
            chunk_size,
            max_sym_per_frame,
        )
        if i > 0:  # the first is the warm-up
            timings.append(timing)
    encoder = first.encoder
    chunk_size = encoder.chunk_size if chunk_size is None else chunk_size
    frame_ms = 1000.0 * frame_shift
    return latency_stats(
        timings,
        chunk_ms=chunk_size * encoder.subsampling_factor * frame_ms,
        lookahead_ms=encoder.streaming_pad_frames * frame_ms,
    )
