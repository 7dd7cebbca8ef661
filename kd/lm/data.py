"""LM training sentences in padded batches (a CutSet's transcripts; a text file's: kd.lm.tokens)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from lhotse import CutSet

from kd.data.dataset import cut_text
from kd.data.errors import TranscriptError
from kd.data.tokenizer import Tokenizer
from kd.lm.model import SENTENCE_BOUNDARY
from kd.lm.tokens import TokenStore

# Sentences of similar length are batched together within pools of this many shuffled sentences, which keeps
# the padding small while every epoch still sees a different order.
_POOL_SIZE = 1000
# Lengths are scanned this many at a time, so that tens of millions of them never become one Python list.
_SCAN_CHUNK = 1_000_000


def cut_sentences(cuts: CutSet, tokenizer: Tokenizer, where: str = "the cuts") -> TokenStore:
    """Token ids of the transcript of every labelled cut, in CutSet order; unlabelled cuts are left out.

    Raises:
        TranscriptError: no cut has a transcript.
    """
    texts, num_cuts = [], 0
    for cut in cuts:
        num_cuts += 1
        if text := cut_text(cut):
            texts.append(text)
    if not texts:
        raise TranscriptError(f"{where}: none of {num_cuts} cuts has a transcript to train the LM on")
    if len(texts) < num_cuts:
        logging.info(
            "%s: %d of %d cuts have no transcript and are not used", where, num_cuts - len(texts), num_cuts
        )
    return TokenStore.from_sentences(tokenizer.encode(texts))


def batch_indices(
    lengths: np.ndarray, max_tokens: int = 0, max_sentences: int = 0, seed: int | None = None
) -> list[np.ndarray]:
    """Groups sentences into batches.

    Args:
        lengths: (N,) tokens per sentence (without the end symbol).
        max_tokens: a batch holds at most this many padded positions, B x (longest + 1) (0: no limit); a
            sentence longer than that forms a batch alone.
        max_sentences: a batch holds at most this many sentences (0: no limit).
        seed: shuffles the sentences, sorts them by length within pools and shuffles the batches; None keeps
            the input order (for validation).
    Returns:
        the indices of each batch's sentences, (B,) int64 each; every sentence is in exactly one batch.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.arange(len(lengths))
    rng = np.random.default_rng(seed) if seed is not None else None
    if rng is not None:
        order = rng.permutation(len(lengths))
        pools = np.arange(len(order)) // _POOL_SIZE
        order = order[np.lexsort((lengths[order], pools))]
    starts: list[int] = []
    size = longest = 0
    for chunk in np.array_split(lengths[order], max(1, len(order) // _SCAN_CHUNK)):
        for length in chunk.tolist():
            grown = max(longest, length + 1)
            too_many_tokens = max_tokens and (size + 1) * grown > max_tokens
            if not starts or (size and (too_many_tokens or size == max_sentences)):
                starts.append(len(starts) and starts[-1] + size)
                size, grown = 0, length + 1
            size += 1
            longest = grown
    bounds = [*starts, len(order)]
    batches = [order[bounds[i] : bounds[i + 1]] for i in range(len(starts))]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(sentences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B, U) int64, padded with the boundary id, and lens (B,) int64 of B token sequences."""
    lens = torch.tensor([len(s) for s in sentences], dtype=torch.int64)
    longest = max((len(s) for s in sentences), default=0)
    tokens = torch.full((len(sentences), longest), SENTENCE_BOUNDARY, dtype=torch.int64)
    for b, sentence in enumerate(sentences):
        tokens[b, : len(sentence)] = torch.tensor(sentence, dtype=torch.int64)
    return tokens, lens


def batches(
    sentences: TokenStore, max_tokens: int = 0, max_sentences: int = 0, seed: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Padded batches (tokens (B, U), lens (B,)) of ``sentences``, as :func:`batch_indices` groups them."""
    for indices in batch_indices(sentences.lengths, max_tokens, max_sentences, seed):
        yield collate([sentences[i] for i in indices.tolist()])
