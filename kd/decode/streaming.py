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


class StreamingGreedySearch:
    """Streaming greedy search over a batch, one chunk per :meth:`step`, carrying encoder states, decoder
    state and hypotheses across chunks.

    Chunk k covers feature frames [k * chunk_size * S, k * chunk_size * S + chunk_size * S + P), with S the
    subsampling factor and P = ``encoder.streaming_pad_frames`` the right context the subsampling needs;
    the features are padded at the end with ``pad_value`` so the last chunk is whole. A caller steps
    ``num_chunks`` times; :meth:`results` gives the hypotheses so far at any point (partial results).

    Args:
        model: a transducer whose encoder is causal and has ``get_init_states``, ``streaming_forward``,
            ``output_lengths``, ``subsampling_factor``, ``streaming_pad_frames`` and ``chunk_size``.
        features: (B, T, F) features.
        feature_lens: (B,) valid frames per utterance.
        chunk_size: encoder frames (after subsampling) per chunk; default: the encoder's ``chunk_size``.
        max_sym_per_frame: symbols emitted at most per frame.
        pad_value: feature value appended past the end of the features.
        blank_penalty: subtracted from the blank logit before the log-softmax (see
            :class:`~kd.decode.greedy.GreedySearch`).
    """

    @torch.inference_mode()
    def __init__(
        self,
        model: nn.Module,
        features: torch.Tensor,
        feature_lens: torch.Tensor,
        chunk_size: int | None = None,
        max_sym_per_frame: int = 1,
        pad_value: float = LOG_EPS,
        blank_penalty: float = 0.0,
    ) -> None:
        encoder = model.encoder
        if not getattr(encoder, "causal", False):
            raise ValueError(
                "streaming_greedy_search needs a causal encoder (encoder.causal is False); train a causal "
                "model or decode with greedy_search / modified_beam_search"
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
        self.model = model
        self.chunk_size = chunk_size
        self.feature_lens = feature_lens.to(device)
        self.shift = chunk_size * encoder.subsampling_factor
        self.window = self.shift + encoder.streaming_pad_frames
        self.expected_lens = encoder.output_lengths(self.feature_lens)
        self.num_chunks = math.ceil(int(self.expected_lens.max()) / chunk_size) if batch_size else 0
        needed = (self.num_chunks - 1) * self.shift + self.window
        if features.size(1) < needed:
            features = F.pad(features, (0, 0, 0, needed - features.size(1)), value=pad_value)
        self.features = features
        self.search = GreedySearch(model, batch_size, device, max_sym_per_frame, blank_penalty)
        self.states = encoder.get_init_states(batch_size, device)
        self.produced = torch.zeros_like(self.expected_lens)
        self.chunks_done = 0

    @torch.inference_mode()
    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes the next chunk with ``encoder.streaming_forward`` and runs greedy search on its frames.

        Returns:
            the chunk's encoder output (B, C, D) (before ``joiner.encoder_proj``) and its valid frames (B,).
        Raises:
            RuntimeError: when every chunk is done already, or, after the last chunk, when the streamed frame
                counts differ from ``encoder.output_lengths``.
        """
        if self.chunks_done == self.num_chunks:
            raise RuntimeError(f"all {self.num_chunks} chunks are decoded; read the results")
        start = self.chunks_done * self.shift
        x_lens = (self.feature_lens - start).clamp(min=0, max=self.window)
        out, out_lens, self.states = self.model.encoder.streaming_forward(
            self.features[:, start : start + self.window], x_lens, self.states
        )
        self.search.advance(self.model.joiner.encoder_proj(out), out_lens)
        self.produced += out_lens.to(self.produced.device)
        self.chunks_done += 1
        if self.chunks_done == self.num_chunks and not torch.equal(self.produced, self.expected_lens):
            raise RuntimeError(
                f"encoder.streaming_forward produced {self.produced.tolist()} frames but "
                f"encoder.output_lengths expects {self.expected_lens.tolist()}: the encoder's streaming and "
                "full forward disagree"
            )
        return out, out_lens

    def results(
        self, return_timestamps: bool = False, return_scores: bool = False
    ) -> list[list[int]] | DecodingResults:
        """The hypotheses so far, as :meth:`GreedySearch.results`."""
        return self.search.results(return_timestamps, return_scores)


@torch.inference_mode()
def streaming_greedy_search(
    model: nn.Module,
    features: torch.Tensor,
    feature_lens: torch.Tensor,
    chunk_size: int | None = None,
    max_sym_per_frame: int = 1,
    pad_value: float = LOG_EPS,
    blank_penalty: float = 0.0,
    return_timestamps: bool = False,
    return_scores: bool = False,
) -> list[list[int]] | DecodingResults:
    """Feeds features to ``encoder.streaming_forward`` chunk by chunk and runs greedy search on each chunk
    (:class:`StreamingGreedySearch`, whose docstring says which frames a chunk covers).

    Args:
        model, features (B, T, F), feature_lens (B,), chunk_size, max_sym_per_frame, pad_value,
            blank_penalty: as for :class:`StreamingGreedySearch`.
        return_timestamps: also return the (global) encoder frame of each emitted token.
        return_scores: also return the greedy path log-probability.
    Returns:
        as :func:`kd.decode.greedy.greedy_search_batch` on the whole encoder output, which it equals when
        the encoder's streaming and full (chunk-masked) forward agree.
    """
    search = StreamingGreedySearch(
        model, features, feature_lens, chunk_size, max_sym_per_frame, pad_value, blank_penalty
    )
    for _ in range(search.num_chunks):
        search.step()
    return search.results(return_timestamps, return_scores)
