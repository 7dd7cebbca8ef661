"""Fixtures of the LM tests: a tiny text corpus (cuts with transcripts and no audio) with its BPE models, and,
for decoding and target generation, the target tests' tiny corpus with features and random teacher."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from .shared import targets_conftest

corpus = targets_conftest.corpus
teacher_dir = targets_conftest.teacher_dir

SUBJECTS = ("THE CAT", "A DOG", "MY BIRD", "OUR FISH")
VERBS = ("SEES", "CHASES", "LIKES", "FEEDS")


@dataclass
class TextCorpus:
    train_cuts: Path  # 20 sentences and one cut without a transcript
    valid_cuts: Path  # 8 other sentences of the same grammar
    bpe_model: Path
    smaller_bpe_model: Path  # fewer tokens
    other_bpe_model: Path  # as many tokens, trained on other text


def grammar_sentences(count: int, seed: int) -> list[str]:
    """``subject verb subject`` sentences: a structure a tiny LM learns in a few epochs."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(SUBJECTS)}" for _ in range(count)]


def write_text_cuts(path: Path, texts: list[str | None]) -> Path:
    """Cuts without audio whose one supervision carries each text (None: an unlabelled cut)."""
    from lhotse import CutSet, MonoCut, SupervisionSegment

    cuts = [
        MonoCut(
            id=f"{path.stem}-{i}",
            start=0.0,
            duration=1.0,
            channel=0,
            supervisions=[SupervisionSegment(f"{path.stem}-{i}", f"{path.stem}-{i}", 0.0, 1.0, text=text)],
        )
        for i, text in enumerate(texts)
    ]
    CutSet.from_cuts(cuts).to_file(path)
    return path


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory: pytest.TempPathFactory) -> TextCorpus:
    from kd.data.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("lm_text")
    train = grammar_sentences(20, seed=0)
    valid = grammar_sentences(8, seed=1)
    return TextCorpus(
        write_text_cuts(root / "text_cuts_train.jsonl.gz", [*train, None]),
        write_text_cuts(root / "text_cuts_dev.jsonl.gz", valid),
        train_bpe(train, vocab_size=26, output_dir=root / "lang"),
        train_bpe(train, vocab_size=23, output_dir=root / "lang_smaller"),
        train_bpe([t.replace("A", "E") for t in train], vocab_size=26, output_dir=root / "lang_other"),
    )


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only add overhead on a shared machine
    yield
    torch.set_num_threads(threads)
