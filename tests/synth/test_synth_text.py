"""Sentence normalisation, the shipped sentence list and vocabulary restriction."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from kd.data.synth import text as T

SHIPPED = Path(__file__).resolve().parents[2] / "local" / "data" / "sentences.txt.gz"


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "Mr. Darcy and Mrs. Bennet met Dr. Jones at St. Paul's.",
            "Mister Darcy and Missus Bennet met Doctor Jones at Saint Paul's.",
        ),
        ("She was _very_ happy to see him again.", "She was very happy to see him again."),
        (
            "\u201cI shall come to-morrow,\u201d said she, \u201cif it is fine.\u201d",
            "I shall come tomorrow, said she, if it is fine.",
        ),
        ("He was a well-known man--and a rich one.", "He was a well known man, and a rich one."),
        ("The \u00e9clat of the ball was quite unequalled.", "The eclat of the ball was quite unequalled."),
        ("'Tis the ladies' favourite walk, I think.", "Tis the ladies favourite walk, I think."),
        ("the stone of a cherry is very hard", None),  # no final punctuation
        ("the stone of a cherry is very hard.".capitalize(), "The stone of a cherry is very hard."),
    ],
)
def test_clean_sentence_rewrites(raw: str, expected: str | None) -> None:
    assert T.clean_sentence(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "He was born in 1775 in a small village.",  # digits
        "She paid $3 for the ribbon at the shop.",  # symbols
        "The NASA launch was delayed again today.",  # acronym
        "It is described in Chapter IV of the book.",  # roman numeral
        "Letters were sent to J. Smith of the town.",  # initial
        "He brought apples, pears, plums, etc. to the party.",  # abbreviation
        "CHAPTER THE FIRST BEGINS HERE AT LAST.",  # heading in capitals
        "Too short here.",  # fewer than 5 words
        " ".join(["word"] * 30) + ".",  # more than 24 words
        "An \u4e2d character is in this sentence.",  # non-Latin letters
    ],
)
def test_clean_sentence_rejects(raw: str) -> None:
    assert T.clean_sentence(raw) is None


def test_transcript_is_upper_case_without_punctuation() -> None:
    text = T.clean_sentence("'Don't you think,' said Mrs. Smith's maid, 'that the Bennets' house is large?'")
    assert T.to_transcript(text) == "DON'T YOU THINK SAID MISSUS SMITH'S MAID THAT THE BENNETS HOUSE IS LARGE"


def test_split_sentences_keeps_titles_and_quotes_together() -> None:
    para = T.prepare_paragraph('"Yes," said Mr. Darcy. "I shall go." It was late.--She rose at last.')
    assert T.split_sentences(para) == [
        '"Yes," said Mister Darcy.',
        '"I shall go."',
        "It was late.",
        "She rose at last.",
    ]


def test_build_sentences_dedupes_by_transcript_and_keeps_order() -> None:
    raw = [
        ("a", "The first one is right here."),
        ("b", "the first ONE is right here!"),
        ("a", "Then a second sentence follows it."),
        ("a", "1984 was a year to remember."),
    ]
    out = T.build_sentences(raw)
    assert [(s.source, s.text) for s in out] == [
        ("a", "The first one is right here."),
        ("a", "Then a second sentence follows it."),
    ]


def test_write_read_roundtrip_is_byte_stable(tmp_path: Path) -> None:
    sents = [T.Sentence("x", "A first little sentence here."), T.Sentence("y", "And a second one after.")]
    a, b = tmp_path / "a.txt.gz", tmp_path / "b.txt.gz"
    T.write_sentences(a, sents, ["header line"])
    T.write_sentences(b, sents, ["header line"])
    assert a.read_bytes() == b.read_bytes()
    assert T.read_sentences(a) == sents


def test_read_sentences_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make_synth_text.sh"):
        T.read_sentences(tmp_path / "missing.txt.gz")
    bad = tmp_path / "bad.txt"
    bad.write_text("no tab on this line\n")
    with pytest.raises(ValueError, match=r"bad.txt:1"):
        T.read_sentences(bad)


def test_restrict_vocabulary_keeps_only_common_words() -> None:
    sents = [
        T.Sentence("s", t)
        for t in (
            "The cat sat on the mat.",
            "The dog sat on the mat.",
            "The cat saw the dog.",
            "A zebra grazed near the river.",
        )
    ]
    kept = T.restrict_vocabulary(sents, 6)
    vocab = {w for w, _ in sorted(T.word_counts(sents).items(), key=lambda kv: (-kv[1], kv[0]))[:6]}
    assert kept and all(set(s.transcript.split()) <= vocab for s in kept)
    assert sents[3] not in kept
    assert T.restrict_vocabulary(sents, None) == sents
    with pytest.raises(ValueError):
        T.restrict_vocabulary(sents, 0)


def test_shipped_list_is_normalised_and_attributed() -> None:
    with gzip.open(SHIPPED, "rt") as f:
        header = [line for line in f if line.startswith("#")]
    sents = T.read_sentences(SHIPPED)
    assert len(sents) > 20000
    sources = {s.source for s in sents}
    assert sources <= set(T.SOURCES)
    for source in sources:  # every source has a provenance line with its licence
        assert any(line.startswith(f"# {source}\t") for line in header)
    assert len({s.transcript for s in sents}) == len(sents)
    for s in sents[::50]:
        assert T.clean_sentence(s.text) == s.text
        assert re.fullmatch(r"[A-Z]+(?:'[A-Z]+)*(?: [A-Z]+(?:'[A-Z]+)*)*", s.transcript)
        assert T.MIN_WORDS <= len(s.transcript.split()) <= T.MAX_WORDS
    assert (SHIPPED.parent / "sentences.LICENCES.txt").read_text().count("Princeton") >= 2
