"""BPE training and the Tokenizer: vocabulary size, blank 0, round trips, characters outside the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_corpora import sentence

from kd.data.errors import TranscriptError
from kd.data.tokenizer import Tokenizer, TokenizerError, train_bpe

TEXTS = [sentence(seed, num_words=6) for seed in range(300)]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_bpe(TEXTS, vocab_size=60, output_dir=tmp_path_factory.mktemp("lang_bpe_60"))


def test_lang_dir_and_special_ids(model: Path) -> None:
    assert sorted(p.name for p in model.parent.iterdir()) == [
        "bpe.model",
        "bpe.vocab",
        "transcript_words.txt",
    ]
    assert model.with_name("transcript_words.txt").read_text().splitlines() == TEXTS
    tok = Tokenizer(model)
    assert tok.vocab_size == 60
    assert tok.blank_id == 0 and tok.sp.id_to_piece(0) == "<blk>"
    assert tok.sp.id_to_piece(1) == "<sos/eos>"
    assert tok.unk_id == 2 and tok.sp.id_to_piece(2) == "<unk>"


def test_round_trip_never_emits_specials(model: Path) -> None:
    tok = Tokenizer(model)
    texts = TEXTS[:20] + ["SUNNY OWLS PLAY", "A"]
    ids = tok.encode(texts)
    assert len(ids) == len(texts)
    for text, seq in zip(texts, ids):
        assert seq and all(3 <= i < tok.vocab_size for i in seq)
        assert tok.decode(seq) == text
    assert tok.decode([0, *ids[0], 0]) == texts[0]  # blanks are dropped


def test_characters_outside_the_model_name_the_utterance(model: Path) -> None:
    tok = Tokenizer(model)
    assert tok.unknown_chars("THE DOG") == set()
    assert tok.unknown_chars("the DOG!") == {"t", "h", "e", "!"}
    tok.check([("utt-ok", "THE DOG")])
    with pytest.raises(TokenizerError, match=r"1 utterance\(s\).*utt-bad: '!eÉ'") as e:
        tok.check([("utt-ok", "THE DOG"), ("utt-bad", "THE DOG! Ée")])
    assert str(model) in str(e.value)


def test_existing_model_is_kept(model: Path) -> None:
    before = model.stat().st_mtime_ns
    assert train_bpe(["OTHER TEXT"], vocab_size=60, output_dir=model.parent) == model
    assert model.stat().st_mtime_ns == before


def test_too_large_vocabulary_and_no_text_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="lower --vocab-size"):
        train_bpe(TEXTS[:5], vocab_size=5000, output_dir=tmp_path / "big")
    assert not (tmp_path / "big" / "bpe.model").exists()
    with pytest.raises(TranscriptError, match="no transcripts"):
        train_bpe(["", "  "], vocab_size=50, output_dir=tmp_path / "empty")


def test_model_without_blank_at_zero_is_rejected(tmp_path: Path) -> None:
    import sentencepiece as spm

    (tmp_path / "t.txt").write_text("\n".join(TEXTS))
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "t.txt"), model_prefix=str(tmp_path / "plain"), vocab_size=40, minloglevel=2
    )
    with pytest.raises(TokenizerError, match="not the blank"):
        Tokenizer(tmp_path / "plain.model")
