"""LM training text: a CutSet's transcripts or a text file's lines as token sequences, in padded batches."""

from __future__ import annotations

import gzip
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import torch
from lhotse import CutSet

from kd.data.dataset import cut_text
from kd.data.errors import MissingFileError, TranscriptError
from kd.data.tokenizer import Tokenizer
from kd.lm.model import SENTENCE_BOUNDARY

# Sentences of similar length are batched together within pools of this many shuffled sentences, which keeps
# the padding small while every epoch still sees a different order.
_POOL_SIZE = 1000


def cut_sentences(cuts: CutSet, tokenizer: Tokenizer, where: str = "the cuts") -> list[list[int]]:
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
    return tokenizer.encode(texts)


def text_sentences(path: str | Path, tokenizer: Tokenizer) -> list[list[int]]:
    """Token ids of every non-blank line of a text file (plain or ``.gz``): one sentence per line, written
    as the transcripts are (part of LibriSpeech's ``librispeech-lm-norm.txt``, the synthetic corpus'
    ``lm-text``). The whole text is read and tokenised into memory, as the transcripts of a CutSet are.

    Raises:
        MissingFileError: no such file.
        TranscriptError: the file holds no sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: LM training text not found (one sentence per line, plain or .gz)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    if not texts:
        raise TranscriptError(f"{path}: no sentences to train the LM on (one sentence per line)")
    return tokenizer.encode(texts)


def batch_indices(
    lengths: list[int], max_tokens: int = 0, max_sentences: int = 0, seed: int | None = None
) -> list[list[int]]:
    """Groups sentences into batches.

    Args:
        lengths: tokens per sentence (without the end symbol).
        max_tokens: a batch holds at most this many padded positions, B x (longest + 1) (0: no limit); a
            sentence longer than that forms a batch alone.
        max_sentences: a batch holds at most this many sentences (0: no limit).
        seed: shuffles the sentences, sorts them by length within pools and shuffles the batches; None keeps
            the input order (for validation).
    Returns:
        the indices of each batch's sentences; every sentence is in exactly one batch.
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed) if seed is not None else None
    if rng is not None:
        rng.shuffle(order)
        order = [
            i
            for start in range(0, len(order), _POOL_SIZE)
            for i in sorted(order[start : start + _POOL_SIZE], key=lengths.__getitem__)
        ]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        grown = max(longest, lengths[i] + 1)
        too_many_tokens = max_tokens and (len(current) + 1) * grown > max_tokens
        if current and (too_many_tokens or (max_sentences and len(current) == max_sentences)):
            batches.append(current)
            current, grown = [], lengths[i] + 1
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
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
    sentences: list[list[int]], max_tokens: int = 0, max_sentences: int = 0, seed: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Padded batches (tokens (B, U), lens (B,)) of ``sentences``, as :func:`batch_indices` groups them."""
    for indices in batch_indices([len(s) for s in sentences], max_tokens, max_sentences, seed):
        yield collate([sentences[i] for i in indices])
