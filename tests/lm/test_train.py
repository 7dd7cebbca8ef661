"""LM training: the perplexity falls, a stopped run resumes after its last epoch exactly, and a trained LM
loads only with its own tokenizer."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from kd.bin import train_lm
from kd.config import ConfigError
from kd.data.io import load_cuts
from kd.data.tokenizer import Tokenizer
from kd.lm import LmConfig, LmTrainer, load_lm
from kd.lm.data import cut_sentences
from kd.train.checkpoint import CheckpointError, epoch_checkpoints, load_checkpoint

TINY = {
    "embedding_dim": 16,
    "hidden_dim": 16,
    "num_layers": 1,
    "dropout": 0.1,
    "lr": 0.02,
    "max_tokens": 0,
    "max_sentences": 4,
    "num_threads": 1,
    "device": "cpu",
    "log_interval": 1,
}


def train(text_corpus, exp_dir: Path, **overrides) -> list[dict[str, float]]:
    config = LmConfig(**{**TINY, **overrides})
    corpus = text_corpus
    return LmTrainer(config, exp_dir, corpus.train_cuts, corpus.valid_cuts, corpus.bpe_model).fit()


def run_cli(text_corpus, exp_dir: Path, monkeypatch, *overrides: str) -> None:
    argv = [
        "train_lm",
        "--train-cuts",
        str(text_corpus.train_cuts),
        "--valid-cuts",
        str(text_corpus.valid_cuts),
        "--bpe-model",
        str(text_corpus.bpe_model),
        "--exp-dir",
        str(exp_dir),
        *[f"{k}={v}" for k, v in TINY.items()],
        *overrides,
    ]
    monkeypatch.setattr(sys, "argv", argv)
    train_lm.main()


def test_training_lowers_the_dev_perplexity(text_corpus, tmp_path):
    records = train(text_corpus, tmp_path, num_epochs=6)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert json.loads((tmp_path / "ppl.json").read_text()) == records
    first, last = records[0]["valid_ppl"], records[-1]["valid_ppl"]
    assert last < 0.6 * first, records

    # The recorded perplexity is the exp of the NLL per token, end symbols included, of the dev sentences
    # scored one by one by the saved LM.
    tokenizer = Tokenizer(text_corpus.bpe_model)
    lm = load_lm(tmp_path, tokenizer=tokenizer)
    assert not lm.training
    sentences = cut_sentences(load_cuts(text_corpus.valid_cuts), tokenizer)
    with torch.no_grad():
        nll = sum(float(lm(torch.tensor([s]), torch.tensor([len(s)])).sum()) for s in sentences)
    num_tokens = sum(len(s) + 1 for s in sentences)
    assert last == pytest.approx(math.exp(nll / num_tokens), rel=1e-5)
    assert last < tokenizer.vocab_size  # better than a uniform guess
    assert sorted(epoch_checkpoints(tmp_path)) == [1, 2, 3, 4, 5, 6]


def test_a_stopped_run_resumes_after_its_last_epoch(text_corpus, tmp_path, monkeypatch):
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    run_cli(text_corpus, resumed, monkeypatch, "num_epochs=1")
    assert sorted(epoch_checkpoints(resumed)) == [1]
    first = (resumed / "epoch-1.pt").read_bytes()

    run_cli(text_corpus, resumed, monkeypatch, "num_epochs=2")
    assert sorted(epoch_checkpoints(resumed)) == [1, 2]
    assert (resumed / "epoch-1.pt").read_bytes() == first  # epoch 1 was not trained again
    log = "".join(p.read_text() for p in (resumed / "log").glob("train_lm-*.log"))
    assert f"resumed from {resumed / 'epoch-1.pt'}: epoch 2" in log
    assert log.count("epoch 1: training perplexity") == log.count("epoch 2: training perplexity") == 1
    assert [r["epoch"] for r in json.loads((resumed / "ppl.json").read_text())] == [1, 2]
    assert load_checkpoint(resumed / "epoch-2.pt")["epoch"] == 2

    # Same batches, same dropout masks: the resumed run ends where an uninterrupted one does.
    train(text_corpus, straight, num_epochs=2)
    got = load_checkpoint(resumed / "epoch-2.pt")["model"]
    want = load_checkpoint(straight / "epoch-2.pt")["model"]
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)

    # A finished run trains nothing more.
    mtime = (resumed / "epoch-2.pt").stat().st_mtime_ns
    run_cli(text_corpus, resumed, monkeypatch, "num_epochs=2")
    assert (resumed / "epoch-2.pt").stat().st_mtime_ns == mtime


def test_an_experiment_keeps_its_model(text_corpus, tmp_path):
    train(text_corpus, tmp_path, num_epochs=1)
    with pytest.raises(ConfigError, match="another LM"):
        train(text_corpus, tmp_path, num_epochs=2, hidden_dim=8, embedding_dim=8)
    other = LmConfig(**{**TINY, "num_epochs": 2})
    corpus = text_corpus
    with pytest.raises(ConfigError, match="other tokens"):
        LmTrainer(other, tmp_path, corpus.train_cuts, corpus.valid_cuts, corpus.other_bpe_model).fit()


def test_load_lm_refuses_another_tokenizer(text_corpus, tmp_path):
    train(text_corpus, tmp_path, num_epochs=1)
    smaller = Tokenizer(text_corpus.smaller_bpe_model)
    with pytest.raises(ConfigError, match=f"has {smaller.vocab_size} tokens, not the LM's 26"):
        load_lm(tmp_path, tokenizer=smaller)
    with pytest.raises(ConfigError, match="vocabulary size but other tokens"):
        load_lm(tmp_path, tokenizer=Tokenizer(text_corpus.other_bpe_model))
    with pytest.raises(CheckpointError, match="no epoch-3.pt"):
        load_lm(tmp_path, epoch=3)
    with pytest.raises(CheckpointError, match="no epoch-N.pt"):
        load_lm(tmp_path / "missing")
    assert load_lm(tmp_path, epoch=1, tokenizer=Tokenizer(text_corpus.bpe_model)).vocab_size == 26


def test_a_text_file_trains_the_same_lm_as_the_cuts_of_its_sentences(text_corpus, tmp_path, monkeypatch):
    """One sentence per line, gzipped or not, blank lines ignored: the same token sequences in the same order
    as the labelled cuts', hence the same perplexities to the last digit."""
    import gzip

    from kd.data.errors import MissingFileError, TranscriptError
    from kd.lm.tokens import tokenize_text

    texts = [s.text for c in load_cuts(text_corpus.train_cuts) for s in c.supervisions if s.text]
    plain = tmp_path / "lm-text.txt"
    plain.write_text("\n".join(texts[:5]) + "\n\n" + "\n".join(texts[5:]) + "\n")
    packed = tmp_path / "lm-text.txt.gz"
    with gzip.open(packed, "wt") as f:
        f.write("\n".join(texts) + "\n")
    tokenizer = Tokenizer(text_corpus.bpe_model)
    expected = cut_sentences(load_cuts(text_corpus.train_cuts), tokenizer)
    for text in (plain, packed):
        store = tokenize_text(text, tokenizer, tmp_path / f"tokens-{text.name}")
        assert list(store) == list(expected)

    from_cuts = train(text_corpus, tmp_path / "cuts", num_epochs=2)
    config = LmConfig(**{**TINY, "num_epochs": 2})
    from_text = LmTrainer(
        config, tmp_path / "text", None, text_corpus.valid_cuts, text_corpus.bpe_model, train_text=packed
    ).fit()
    assert from_text == from_cuts
    assert load_checkpoint(tmp_path / "text" / "epoch-2.pt")["train_text"] == str(packed)

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train_lm",
            "--train-text",
            str(plain),
            "--valid-cuts",
            str(text_corpus.valid_cuts),
            "--bpe-model",
            str(text_corpus.bpe_model),
            "--exp-dir",
            str(tmp_path / "cli"),
            *[f"{k}={v}" for k, v in TINY.items()],
            "num_epochs=2",
        ],
    )
    train_lm.main()
    assert json.loads((tmp_path / "cli" / "ppl.json").read_text()) == from_cuts

    with pytest.raises(MissingFileError, match="lm-text.gz: LM training text not found"):
        tokenize_text(tmp_path / "lm-text.gz", tokenizer, tmp_path / "missing")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(TranscriptError, match="blank.txt: no sentences"):
        tokenize_text(tmp_path / "blank.txt", tokenizer, tmp_path / "blank")
    # An LM of one text does not resume (nor pass as finished) on another.
    more = LmConfig(**{**TINY, "num_epochs": 3})
    with pytest.raises(ConfigError, match="was trained on .*'train_text'.*not on .*'train_cuts'"):
        LmTrainer(
            more, tmp_path / "text", text_corpus.train_cuts, text_corpus.valid_cuts, text_corpus.bpe_model
        ).fit()
    with pytest.raises(ValueError, match="not both or none"):
        LmTrainer(
            config,
            tmp_path / "x",
            text_corpus.train_cuts,
            text_corpus.valid_cuts,
            text_corpus.bpe_model,
            train_text=packed,
        )
