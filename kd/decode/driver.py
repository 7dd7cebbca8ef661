"""Decoding a whole dataset: batches in, (cut id, reference words, hypothesis words) and timing out."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from kd.decode.beam_search import modified_beam_search
from kd.decode.greedy import greedy_search_batch
from kd.decode.scoring import Result
from kd.decode.streaming import streaming_greedy_search

METHODS = ("greedy_search", "modified_beam_search", "streaming_greedy_search")
_BATCH_KEYS = ("features", "feature_lens", "texts", "cut_ids")


class Tokenizer(Protocol):
    def decode(self, ids: list[int]) -> str: ...


@dataclasses.dataclass(frozen=True)
class Search:
    """One search over the transducer's output.

    Attributes:
        method: one of :data:`METHODS`.
        beam: beam size of modified beam search.
        max_sym_per_frame: symbols emitted per frame at most.
        chunk_size: encoder frames per chunk for streaming (default: the encoder's).
        lm: optional LM with the step API for shallow fusion (modified beam search only).
        lm_scale: its weight.
        blank_penalty: subtracted from the joiner's blank logit before the log-softmax.
    """

    method: str
    beam: int = 4
    max_sym_per_frame: int = 1
    chunk_size: int | None = None
    lm: Any = None
    lm_scale: float = 0.0
    blank_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown decoding method {self.method!r}; choose one of {list(METHODS)}")
        if self.lm is not None and self.method != "modified_beam_search":
            raise ValueError(f"LM shallow fusion needs modified_beam_search, not {self.method}")

    @property
    def needs_encoder_out(self) -> bool:
        """Whether the search runs on the full-context encoder output (streaming runs its own encoder)."""
        return self.method != "streaming_greedy_search"


def search_batch(
    model: nn.Module,
    features: torch.Tensor,
    feature_lens: torch.Tensor,
    search: Search,
    encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[list[int]]:
    """Token ids of the best hypothesis per utterance.

    Args:
        model: a transducer.
        features: (B, T, 80) features.
        feature_lens: (B,) valid frames per utterance.
        search: the search.
        encoded: the full-context encoder's (B, T', D) output and (B,) lengths for these features, when the
            caller has them (the streaming search ignores them: it runs the encoder chunk by chunk).
    """
    if not search.needs_encoder_out:
        return streaming_greedy_search(
            model,
            features,
            feature_lens,
            search.chunk_size,
            search.max_sym_per_frame,
            blank_penalty=search.blank_penalty,
        )
    encoder_out, encoder_out_lens = encoded if encoded is not None else model.encoder(features, feature_lens)
    if search.method == "greedy_search":
        return greedy_search_batch(
            model, encoder_out, encoder_out_lens, search.max_sym_per_frame, search.blank_penalty
        )
    return modified_beam_search(
        model,
        encoder_out,
        encoder_out_lens,
        beam=search.beam,
        lm=search.lm,
        lm_scale=search.lm_scale,
        blank_penalty=search.blank_penalty,
        max_sym_per_frame=search.max_sym_per_frame,
    )


def decode_batch(
    model: nn.Module,
    features: torch.Tensor,
    feature_lens: torch.Tensor,
    method: str,
    beam: int = 4,
    max_sym_per_frame: int = 1,
    chunk_size: int | None = None,
    lm: Any = None,
    lm_scale: float = 0.0,
    blank_penalty: float = 0.0,
) -> list[list[int]]:
    """Token ids of the best hypothesis per utterance.

    Args:
        model: a transducer.
        features: (B, T, 80) features.
        feature_lens: (B,) valid frames per utterance.
        method, beam, max_sym_per_frame, chunk_size, lm, lm_scale, blank_penalty: as :class:`Search`.
    """
    search = Search(method, beam, max_sym_per_frame, chunk_size, lm, lm_scale, blank_penalty)
    return search_batch(model, features, feature_lens, search)


@torch.inference_mode()
def decode_searches(
    model: nn.Module,
    dataloader: Iterable[dict[str, Any]],
    tokenizer: Tokenizer,
    searches: Sequence[Search],
    device: torch.device | str = "cpu",
    frame_shift: float = 0.01,
) -> list[tuple[list[Result], dict[str, float]]]:
    """Decodes every batch of ``dataloader`` with every search, with a tqdm bar; puts ``model`` in eval mode.

    The full-context searches share one encoder forward per batch: on a CPU the encoder is most of the cost
    of greedy and beam search alike, so N searches cost about one encoder pass plus N searches.

    Args:
        model: a transducer on ``device``.
        dataloader: yields dicts with ``features`` (B, T, 80), ``feature_lens`` (B,), ``texts`` (B
            reference strings) and ``cut_ids`` (B strings).
        tokenizer: turns token ids into text (``decode``).
        searches: the searches, at least one.
        device: where to decode.
        frame_shift: seconds per feature frame, to total the audio duration.
    Returns:
        Per search, in order: (cut id, reference words, hypothesis words) per utterance in dataloader order,
        and ``{"audio_seconds", "decode_seconds"}``. Decode seconds count the model and the search, not
        data loading (the shared encoder forward is counted in each search that uses it), so decode
        seconds / audio seconds is the model's real-time factor with that search.
    """
    if not searches:
        raise ValueError("decode_searches needs at least one search")
    model.eval()
    device = torch.device(device)
    results: list[list[Result]] = [[] for _ in searches]
    decode_seconds = [0.0] * len(searches)
    audio_seconds = 0.0
    names = ", ".join(dict.fromkeys(s.method for s in searches))
    for batch in tqdm(dataloader, desc=f"decode ({names})", unit="batch"):
        missing = [k for k in _BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"decode batches need keys {list(_BATCH_KEYS)}; this one lacks {missing}")
        features = batch["features"].to(device)
        feature_lens = batch["feature_lens"].to(device)
        encoded = None
        encoder_seconds = 0.0
        if any(s.needs_encoder_out for s in searches):
            start = time.perf_counter()
            encoded = model.encoder(features, feature_lens)
            encoder_seconds = _synchronized_seconds(start, device)
        for i, search in enumerate(searches):
            start = time.perf_counter()
            hyps = search_batch(model, features, feature_lens, search, encoded)
            decode_seconds[i] += _synchronized_seconds(start, device)
            if search.needs_encoder_out:
                decode_seconds[i] += encoder_seconds
            for cut_id, text, hyp in zip(batch["cut_ids"], batch["texts"], hyps):
                results[i].append((cut_id, text.split(), tokenizer.decode(hyp).split()))
        audio_seconds += float(batch["feature_lens"].sum()) * frame_shift
    return [
        (r, {"audio_seconds": audio_seconds, "decode_seconds": s}) for r, s in zip(results, decode_seconds)
    ]


def decode_dataset(
    model: nn.Module,
    dataloader: Iterable[dict[str, Any]],
    tokenizer: Tokenizer,
    method: str,
    beam: int = 4,
    device: torch.device | str = "cpu",
    max_sym_per_frame: int = 1,
    chunk_size: int | None = None,
    lm: Any = None,
    lm_scale: float = 0.0,
    blank_penalty: float = 0.0,
    frame_shift: float = 0.01,
) -> tuple[list[Result], dict[str, float]]:
    """:func:`decode_searches` with one search (the arguments as :class:`Search`'s)."""
    search = Search(method, beam, max_sym_per_frame, chunk_size, lm, lm_scale, blank_penalty)
    return decode_searches(model, dataloader, tokenizer, [search], device, frame_shift)[0]


def _synchronized_seconds(start: float, device: torch.device) -> float:
    """Seconds since ``start``, after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
