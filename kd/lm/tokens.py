"""LM training sentences as one flat array of token ids and their offsets, in memory or memory-mapped.

A text of tens of millions of sentences (LibriSpeech's ``librispeech-lm-norm.txt``: 40 M lines) does not fit
in memory as Python lists; :func:`tokenize_text` streams it through the tokenizer once, chunk by chunk, into
``<dir>/tokens.bin`` (uint16 ids, or int32 for vocabularies over 65,535) and ``<dir>/offsets.bin`` (int64),
which :class:`TokenStore` then maps from disk. The work resumes where a killed run stopped (``meta.json``
records the lines read and the entries written after every chunk) and is redone only when the text or the
tokenizer changes.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from kd.data.errors import MissingFileError, TranscriptError
from kd.data.io import atomic_path
from kd.data.tokenizer import Tokenizer
from kd.targets.manifest import tokenizer_info

CHUNK_LINES = 100_000


class TokenStore:
    """N sentences: ``tokens`` (total,) holds their ids back to back, ``offsets`` (N + 1,) their starts."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens = tokens
        self.offsets = offsets

    @classmethod
    def from_sentences(cls, sentences: list[list[int]]) -> TokenStore:
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
        offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.fromiter((t for s in sentences for t in s), dtype=np.int64, count=int(offsets[-1]))
        return cls(tokens, offsets)

    @classmethod
    def open(cls, directory: Path) -> TokenStore:
        """The finished store of :func:`tokenize_text` in ``directory``, memory-mapped."""
        meta = json.loads((directory / "meta.json").read_text())
        tokens = np.memmap(directory / "tokens.bin", dtype=meta["dtype"], mode="r", shape=(meta["tokens"],))
        offsets = np.fromfile(directory / "offsets.bin", dtype=np.int64, count=meta["sentences"] + 1)
        return cls(tokens, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[int]:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> np.ndarray:
        """(N,) int64 tokens per sentence."""
        return np.diff(self.offsets)


def tokenize_text(path: str | Path, tokenizer: Tokenizer, directory: Path) -> TokenStore:
    """Token ids of every non-blank line of a text file (plain or ``.gz``; one sentence per line, written as
    the transcripts are), stored in ``directory`` and memory-mapped.

    Raises:
        MissingFileError: no such file.
        TranscriptError: the file holds no sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: LM training text not found (one sentence per line, plain or .gz)")
    directory.mkdir(parents=True, exist_ok=True)
    source = _source(path, tokenizer)
    meta = _read_meta(directory)
    if meta is None or meta["source"] != source:
        if meta is not None:
            logging.info("%s: tokens of another text or tokenizer, tokenising %s again", directory, path)
        dtype = "uint16" if tokenizer.vocab_size <= 2**16 else "int32"
        meta = {
            "source": source,
            "dtype": dtype,
            "lines_read": 0,
            "sentences": 0,
            "tokens": 0,
            "complete": False,
        }
        for name in ("tokens.bin", "offsets.bin"):
            (directory / name).write_bytes(b"")
        (directory / "offsets.bin").write_bytes(np.zeros(1, dtype=np.int64).tobytes())
        _write_meta(directory, meta)
    if not meta["complete"]:
        _tokenize(path, tokenizer, directory, meta)
    if meta["sentences"] == 0:
        raise TranscriptError(f"{path}: no sentences to train the LM on (one sentence per line)")
    return TokenStore.open(directory)


def _tokenize(path: Path, tokenizer: Tokenizer, directory: Path, meta: dict[str, Any]) -> None:
    """Appends the ids of the lines after ``meta['lines_read']`` to the store, one chunk at a time."""
    tokens_file, offsets_file = directory / "tokens.bin", directory / "offsets.bin"
    dtype = np.dtype(meta["dtype"])
    # A kill between a chunk's writes and its meta.json leaves bytes that meta.json does not count.
    os.truncate(tokens_file, meta["tokens"] * dtype.itemsize)
    os.truncate(offsets_file, (meta["sentences"] + 1) * 8)
    if meta["lines_read"]:
        logging.info("%s: resuming after %d lines", path, meta["lines_read"])
    with _open_text(path) as f, open(tokens_file, "ab") as tok, open(offsets_file, "ab") as off:
        lines = islice(f, meta["lines_read"], None)
        bar = tqdm(
            desc=f"tokenising {path.name}", unit=" lines", initial=meta["lines_read"], dynamic_ncols=True
        )
        for chunk in _chunks(lines):
            texts = [line.strip() for line in chunk]
            ids = tokenizer.encode([t for t in texts if t])
            lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
            tok.write(
                np.fromiter((t for s in ids for t in s), dtype=dtype, count=int(lengths.sum())).tobytes()
            )
            off.write((meta["tokens"] + np.cumsum(lengths)).tobytes())
            tok.flush()
            off.flush()
            meta.update(
                lines_read=meta["lines_read"] + len(chunk),
                sentences=meta["sentences"] + len(ids),
                tokens=meta["tokens"] + int(lengths.sum()),
            )
            _write_meta(directory, meta)
            bar.update(len(chunk))
        bar.close()
    meta["complete"] = True
    _write_meta(directory, meta)
    logging.info("%s: %d sentences, %d tokens in %s", path, meta["sentences"], meta["tokens"], directory)


def _chunks(lines: Iterator[str]) -> Iterator[list[str]]:
    while chunk := list(islice(lines, CHUNK_LINES)):
        yield chunk


def _open_text(path: Path) -> TextIO:
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8")


def _source(path: Path, tokenizer: Tokenizer) -> dict[str, Any]:
    """What identifies the text and the tokenizer the store was made from."""
    stat = path.stat()
    text = {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {"text": text, "tokenizer": asdict(tokenizer_info(tokenizer))}


def _read_meta(directory: Path) -> dict[str, Any] | None:
    path = directory / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _write_meta(directory: Path, meta: dict[str, Any]) -> None:
    with atomic_path(directory / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
