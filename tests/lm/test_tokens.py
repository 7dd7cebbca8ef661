"""The token store of an LM training text: the tokenizer's ids line by line, resumed exactly after a kill,
redone when the text or the tokenizer changes."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from kd.data.tokenizer import Tokenizer
from kd.lm import tokens
from kd.lm.tokens import TokenStore, tokenize_text

from .conftest import grammar_sentences


class KilledError(Exception):
    pass


class DyingTokenizer:
    """The real tokenizer, killed at its ``die_at``-th call; counts the lines it was given."""

    def __init__(self, tokenizer: Tokenizer, die_at: int = 0) -> None:
        self.tokenizer = tokenizer
        self.die_at = die_at
        self.calls = self.lines = 0

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)

    def encode(self, texts: list[str]) -> list[list[int]]:
        self.calls += 1
        if self.calls == self.die_at:
            raise KilledError
        self.lines += len(texts)
        return self.tokenizer.encode(texts)


def test_store_holds_every_line_in_order(text_corpus, tmp_path):
    lines = grammar_sentences(30, seed=3)
    path = tmp_path / "text.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines[:10]) + "\n   \n" + "\n".join(lines[10:]) + "\n")
    tokenizer = Tokenizer(text_corpus.bpe_model)
    store = tokenize_text(path, tokenizer, tmp_path / "store")
    expected = tokenizer.encode(lines)
    assert len(store) == 30 and list(store) == expected
    assert store.lengths.tolist() == [len(s) for s in expected]
    assert store.tokens.dtype == np.uint16 and isinstance(store.tokens, np.memmap)
    in_memory = TokenStore.from_sentences(expected)
    assert np.array_equal(in_memory.offsets, store.offsets) and np.array_equal(in_memory.tokens, store.tokens)


def test_a_killed_run_resumes_after_the_lines_it_stored(text_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(tokens, "CHUNK_LINES", 4)
    lines = grammar_sentences(18, seed=4)
    path = tmp_path / "text.txt"
    path.write_text("\n".join(lines) + "\n")
    tokenizer = Tokenizer(text_corpus.bpe_model)
    reference = list(tokenize_text(path, tokenizer, tmp_path / "reference"))

    dying = DyingTokenizer(tokenizer, die_at=3)
    with pytest.raises(KilledError):
        tokenize_text(path, dying, tmp_path / "store")
    meta = json.loads((tmp_path / "store" / "meta.json").read_text())
    assert meta["lines_read"] == 8 and not meta["complete"]
    # Bytes written after the last meta.json (a kill between the two) are not taken as sentences.
    with open(tmp_path / "store" / "tokens.bin", "ab") as f:
        f.write(b"\x07\x00" * 5)

    again = DyingTokenizer(tokenizer)
    assert list(tokenize_text(path, again, tmp_path / "store")) == reference
    assert again.lines == 18 - 8
    # Finished: a rerun reads the store without tokenising anything.
    done = DyingTokenizer(tokenizer, die_at=1)
    assert list(tokenize_text(path, done, tmp_path / "store")) == reference


def test_another_text_or_tokenizer_is_tokenised_again(text_corpus, tmp_path):
    path, store_dir = tmp_path / "text.txt", tmp_path / "store"
    tokenizer, other = Tokenizer(text_corpus.bpe_model), Tokenizer(text_corpus.other_bpe_model)
    path.write_text("THE CAT SEES A DOG\n")
    assert list(tokenize_text(path, tokenizer, store_dir)) == tokenizer.encode(["THE CAT SEES A DOG"])
    lines = ["MY BIRD LIKES OUR FISH", "A DOG FEEDS THE CAT"]
    path.write_text("\n".join(lines) + "\n")
    assert list(tokenize_text(path, tokenizer, store_dir)) == tokenizer.encode(lines)
    assert list(tokenize_text(path, other, store_dir)) == other.encode(lines)
    assert other.encode(lines) != tokenizer.encode(lines)
