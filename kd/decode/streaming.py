"""Chunk-wise streaming greedy search for causal (chunked-attention) encoders."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kd.decode.greedy import GreedySearch
from kd.decode.results import DecodingResults

# log(1e-10): the log-mel value of silence that icefall pads features with.
LOG_EPS = math.log(1e-10)


@torch.inference_mode()
def streaming_greedy_search(
    model: nn.Module,
    features: torch.Tensor,
    feature_lens: torch.Tensor,
    chunk_size: int | None = None,
    max_sym_per_frame: int = 1,
    pad_value: float = LOG_EPS,
    return_timestamps: bool = False,
    return_scores: bool = False,
) -> list[list[int]] | DecodingResults:
    """Feeds features to ``encoder.streaming_forward`` chunk by chunk and runs greedy search on each chunk,
    carrying encoder states, decoder state and hypotheses across chunks.

    Chunk k covers feature frames [k * chunk_size * S, k * chunk_size * S + chunk_size * S + P), with S the
    subsampling factor and P = ``encoder.streaming_pad_frames`` the right context the subsampling needs;
    the features are padded at the end with ``pad_value`` so the last chunk is whole.

    Args:
        model: a transducer whose encoder is causal and has ``get_init_states``, ``streaming_forward``,
            ``output_lengths``, ``subsampling_factor``, ``streaming_pad_frames`` and ``chunk_size``.
        features: (B, T, F) features.
        feature_lens: (B,) valid frames per utterance.
        chunk_size: encoder frames (after subsampling) per chunk; default: the encoder's ``chunk_size``.
        max_sym_per_frame: symbols emitted at most per frame.
        pad_value: feature value appended past the end of the features.
        return_timestamps: also return the (global) encoder frame of each emitted token.
        return_scores: also return the greedy path log-probability.
    Returns:
        as :func:`kd.decode.greedy.greedy_search_batch` on the whole encoder output, which it equals when
        the encoder's streaming and full (chunk-masked) forward agree.
    """
    encoder = model.encoder
    if not getattr(encoder, "causal", False):
        raise ValueError(
            "streaming_greedy_search needs a causal encoder (encoder.causal is False); train a causal model "
            "or decode with greedy_search / modified_beam_search"
        )
    chunk_size = encoder.chunk_size if chunk_size is None else chunk_size
    if chunk_size <= 0:
        raise ValueError(f"streaming needs a chunk_size > 0 (frames after subsampling), got {chunk_size}")
    if features.dim() != 3 or feature_lens.shape != (features.size(0),):
        raise ValueError(
            f"features must be (B, T, F) and feature_lens (B,), got {tuple(features.shape)} and "
            f"{tuple(feature_lens.shape)}"
        )
    device = features.device
    batch_size = features.size(0)
    feature_lens = feature_lens.to(device)
    shift = chunk_size * encoder.subsampling_factor
    window = shift + encoder.streaming_pad_frames
    expected_lens = encoder.output_lengths(feature_lens)
    num_chunks = math.ceil(int(expected_lens.max()) / chunk_size) if batch_size else 0
    needed = (num_chunks - 1) * shift + window
    if features.size(1) < needed:
        features = F.pad(features, (0, 0, 0, needed - features.size(1)), value=pad_value)

    search = GreedySearch(model, batch_size, device, max_sym_per_frame)
    states = encoder.get_init_states(batch_size, device)
    produced = torch.zeros_like(expected_lens)
    for k in range(num_chunks):
        start = k * shift
        x_lens = (feature_lens - start).clamp(min=0, max=window)
        out, out_lens, states = encoder.streaming_forward(features[:, start : start + window], x_lens, states)
        search.advance(model.joiner.encoder_proj(out), out_lens)
        produced += out_lens.to(produced.device)
    if not torch.equal(produced, expected_lens):
        raise RuntimeError(
            f"encoder.streaming_forward produced {produced.tolist()} frames but encoder.output_lengths "
            f"expects {expected_lens.tolist()}: the encoder's streaming and full forward disagree"
        )
    return search.results(return_timestamps, return_scores)
