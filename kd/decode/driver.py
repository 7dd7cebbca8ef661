"""Decoding a whole dataset: batches in, (cut id, reference words, hypothesis words) and timing out."""

from __future__ import annotations

import time
from collections.abc import Iterable
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
        method: one of :data:`METHODS`.
        beam: beam size of modified beam search.
        max_sym_per_frame: symbols emitted per frame at most, in every method.
        chunk_size: encoder frames per chunk for streaming (default: the encoder's).
        lm: optional LM with the step API for shallow fusion (modified beam search only).
        lm_scale: its weight.
        blank_penalty: subtracted from the joiner's blank logit before the log-softmax, in every method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r}; choose one of {list(METHODS)}")
    if lm is not None and method != "modified_beam_search":
        raise ValueError(f"LM shallow fusion needs modified_beam_search, not {method}")
    if method == "streaming_greedy_search":
        return streaming_greedy_search(
            model, features, feature_lens, chunk_size, max_sym_per_frame, blank_penalty=blank_penalty
        )
    encoder_out, encoder_out_lens = model.encoder(features, feature_lens)
    if method == "greedy_search":
        return greedy_search_batch(model, encoder_out, encoder_out_lens, max_sym_per_frame, blank_penalty)
    return modified_beam_search(
        model,
        encoder_out,
        encoder_out_lens,
        beam=beam,
        lm=lm,
        lm_scale=lm_scale,
        blank_penalty=blank_penalty,
        max_sym_per_frame=max_sym_per_frame,
    )


@torch.inference_mode()
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
    """Decodes every batch of ``dataloader`` with a tqdm bar; puts ``model`` in eval mode.

    Args:
        model: a transducer on ``device``.
        dataloader: yields dicts with ``features`` (B, T, 80), ``feature_lens`` (B,), ``texts`` (B
            reference strings) and ``cut_ids`` (B strings).
        tokenizer: turns token ids into text (``decode``).
        method, beam, max_sym_per_frame, chunk_size, lm, lm_scale, blank_penalty: as :func:`decode_batch`.
        device: where to decode.
        frame_shift: seconds per feature frame, to total the audio duration.
    Returns:
        (cut id, reference words, hypothesis words) per utterance in dataloader order, and
        ``{"audio_seconds", "decode_seconds"}``; decode seconds count the model and search, not data
        loading, so decode seconds / audio seconds is the model's real-time factor.
    """
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r}; choose one of {list(METHODS)}")
    model.eval()
    device = torch.device(device)
    results: list[Result] = []
    audio_seconds = decode_seconds = 0.0
    for batch in tqdm(dataloader, desc=f"decode ({method})", unit="batch"):
        missing = [k for k in _BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"decode batches need keys {list(_BATCH_KEYS)}; this one lacks {missing}")
        start = time.perf_counter()
        hyps = decode_batch(
            model,
            batch["features"].to(device),
            batch["feature_lens"].to(device),
            method,
            beam=beam,
            max_sym_per_frame=max_sym_per_frame,
            chunk_size=chunk_size,
            lm=lm,
            lm_scale=lm_scale,
            blank_penalty=blank_penalty,
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        decode_seconds += time.perf_counter() - start
        audio_seconds += float(batch["feature_lens"].sum()) * frame_shift
        for cut_id, text, hyp in zip(batch["cut_ids"], batch["texts"], hyps):
            results.append((cut_id, text.split(), tokenizer.decode(hyp).split()))
    return results, {"audio_seconds": audio_seconds, "decode_seconds": decode_seconds}
