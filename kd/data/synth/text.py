"""Sentences for the synthetic corpus: extraction from Debian packages, normalisation, the shipped list.

The shipped list (``local/data/sentences.txt.gz``) holds one sentence per line as ``<source>\\t<text>``,
where ``text`` is cleaned prose that every TTS engine reads the same way (ASCII letters, spaces and basic
punctuation) and the transcript is derived from it by :func:`to_transcript`. Lines starting with ``#`` are
the provenance header. Sentences keep their document order so that consecutive lines can be joined into
longer utterances.

Regenerate the list with ``local/make_synth_text.sh`` (``apt-get download`` + this module's ``main``).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import io
import re
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kd.data.synth.rdata import RObject, read_lazyload_db

MIN_WORDS = 5
MAX_WORDS = 24

# Sources: id -> (Debian package, path inside the package, licence of the text).
SOURCES: dict[str, tuple[str, str, str]] = {
    "austen-sense": ("r-cran-janeaustenr", "janeaustenr data: sensesensibility", "public domain (1811)"),
    "austen-pride": ("r-cran-janeaustenr", "janeaustenr data: prideprejudice", "public domain (1813)"),
    "austen-mansfield": ("r-cran-janeaustenr", "janeaustenr data: mansfieldpark", "public domain (1814)"),
    "austen-emma": ("r-cran-janeaustenr", "janeaustenr data: emma", "public domain (1815)"),
    "austen-northanger": ("r-cran-janeaustenr", "janeaustenr data: northangerabbey", "public domain (1817)"),
    "austen-persuasion": ("r-cran-janeaustenr", "janeaustenr data: persuasion", "public domain (1817)"),
    "melville-mobydick": ("r-cran-tokenizers", "tokenizers data: mobydick", "public domain (1851)"),
    "harvard": (
        "r-cran-stringr",
        "stringr data: sentences",
        "IEEE 1969 Harvard sentences, treated as public domain; package MIT",
    ),
    "us-declaration": ("miscfiles", "/usr/share/state/us-declaration.gz", "public domain (1776)"),
    "us-constitution": ("miscfiles", "/usr/share/state/us-constitution.gz", "public domain (1787)"),
    "wordnet": (
        "wordnet-base",
        "/usr/share/wordnet/data.{noun,verb,adj,adv} gloss examples",
        "WordNet 3.0 licence (permissive; notice below must be kept)",
    ),
}
PACKAGES = ("r-cran-janeaustenr", "r-cran-tokenizers", "r-cran-stringr", "wordnet-base", "miscfiles")
_AUSTEN = {
    "sensesensibility": "austen-sense",
    "prideprejudice": "austen-pride",
    "mansfieldpark": "austen-mansfield",
    "emma": "austen-emma",
    "northangerabbey": "austen-northanger",
    "persuasion": "austen-persuasion",
}
WORDNET_NOTICE = """\
WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.
Permission to use, copy, modify and distribute this software and database and its documentation for any
purpose and without fee or royalty is hereby granted, provided that you agree to comply with the following
copyright notice and statements, including the disclaimer, and that the same appear on ALL copies of the
software, database and documentation, including modifications that you make for internal use or for
distribution.
THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR
WARRANTIES, EXPRESS OR IMPLIED. BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO
REPRESENTATIONS OR WARRANTIES OF MERCHANTABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE OF
THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS,
TRADEMARKS OR OTHER RIGHTS.
The name of Princeton University or Princeton may not be used in advertising or publicity pertaining to
distribution of the software and/or database. Title to copyright in this software, database and any
associated documentation shall at all times remain with Princeton University and LICENSEE agrees to
preserve same.
"""


@dataclass(frozen=True)
class Sentence:
    """One sentence of the list: ``text`` is what the engines read, ``transcript`` what the corpus stores."""

    source: str
    text: str

    @property
    def transcript(self) -> str:
        return to_transcript(self.text)


# --- normalisation -------------------------------------------------------------------------------------

_UNICODE_PUNCT = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2014": "--",
    "\u2013": "-",
    "\u00a0": " ",
    "\ufeff": "",
    "\u2026": "...",
    "`": "'",
}
# Titles are expanded before sentence splitting, or their full stop would end the sentence.
_TITLES = [
    (re.compile(rf"\b{abbr}\.?(?=\s+[A-Z])"), full)
    for abbr, full in (("Mrs", "Missus"), ("Mr", "Mister"), ("Dr", "Doctor"), ("St", "Saint"))
]
# Archaic hyphenations that engines would otherwise read as two words.
_JOINED = {
    "to-morrow": "tomorrow",
    "to-day": "today",
    "to-night": "tonight",
    "any-thing": "anything",
    "every-thing": "everything",
    "some-thing": "something",
    "no-thing": "nothing",
}
_ALLOWED = re.compile(r"^[A-Za-z ,.;:!?'\"()\-]+$")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_SINGLE_LETTER_WORDS = {"I", "A", "a", "O"}
_ABBREVIATIONS = {"etc", "viz", "ie", "eg", "vs", "esq", "cf", "ibid", "co", "ltd", "jr", "sr"}
# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by space and an opening capital.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s+[\"'(\[]*[A-Z])")


def fold_unicode(text: str) -> str:
    """Map typographic punctuation to ASCII and strip accents (``éclat`` -> ``eclat``)."""
    for a, b in _UNICODE_PUNCT.items():
        text = text.replace(a, b)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


def prepare_paragraph(paragraph: str) -> str:
    """Paragraph-level clean-up that must happen before sentence splitting."""
    text = fold_unicode(paragraph).replace("_", "")  # Gutenberg marks italics as _word_
    text = re.sub(r"\s+", " ", text).strip()
    # Austen runs sentences together as "dreadful.--The year": make the dash a plain break.
    text = re.sub(r"([.!?])[\"']?--+", r"\1 ", text)
    for pattern, full in _TITLES:
        text = pattern.sub(full, text)
    return text


def split_sentences(paragraph: str) -> list[str]:
    """Split a prepared paragraph into sentences (see :func:`prepare_paragraph`)."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        out.append(paragraph[start : m.end()])
        start = m.end()
    out.append(paragraph[start:])
    return [s.strip() for s in out if s.strip()]


def clean_sentence(sentence: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> str | None:
    """The engine-ready form of one sentence, or None when it is rejected.

    Rejected: characters other than letters and basic punctuation (digits, symbols, non-Latin letters),
    acronyms and upper-case headings (words of two or more capitals, which also covers roman numerals),
    single-letter initials, abbreviations, full stops inside the sentence, no final ``.``/``!``/``?``, and
    fewer than ``min_words`` or more than ``max_words`` words.
    """
    text = prepare_paragraph(sentence)
    if not text or not _ALLOWED.match(text):
        return None
    text = re.sub(r'["\[\]]', "", text)
    text = re.sub(r"\s*(?:--+|\.\.\.+)\s*", ", ", text)
    text = re.sub(r"\s*[()]\s*", ", ", text)
    text = re.sub(r"\b[A-Za-z]+-[A-Za-z]+\b", lambda m: _JOINED.get(m.group(0).lower(), m.group(0)), text)
    text = text.replace("-", " ")
    # Apostrophes survive only inside words: quotation marks and 'tis / ladies' forms lose them.
    text = re.sub(r"(?<![A-Za-z])'|'(?![A-Za-z])", "", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"\s+", " ", text).strip(" ,;:")
    if not text or text[-1] not in ".!?":
        return None
    if "." in text.rstrip(".!?"):  # an abbreviation or a missed sentence break
        return None
    words = _WORD.findall(text)
    if not min_words <= len(words) <= max_words:
        return None
    for word in words:
        letters = word.replace("'", "")
        if len(letters) >= 2 and letters.isupper():
            return None
        if len(letters) == 1 and letters not in _SINGLE_LETTER_WORDS:
            return None
        if letters.lower() in _ABBREVIATIONS:
            return None
    return text[0].upper() + text[1:]


def to_transcript(text: str) -> str:
    """LibriSpeech-style transcript: upper case words, apostrophes only inside words, no punctuation."""
    return " ".join(_WORD.findall(text)).upper()


def sentences_from_paragraphs(paragraphs: Iterable[str]) -> Iterator[str]:
    for paragraph in paragraphs:
        yield from split_sentences(prepare_paragraph(paragraph))


def paragraphs_from_lines(lines: Iterable[str]) -> Iterator[str]:
    """Group lines into paragraphs separated by blank lines."""
    block: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if line.strip():
            block.append(line.strip())
        elif block:
            yield " ".join(block)
            block = []
    if block:
        yield " ".join(block)


# --- sources -------------------------------------------------------------------------------------------


def _gutenberg_body(text: str) -> str:
    """The book between Project Gutenberg's START and END markers (the licence is not prose to read)."""
    start = re.search(r"\*\*\* ?START OF [^\n]*\n", text)
    end = re.search(r"\*\*\* ?END OF ", text)
    return text[start.end() if start else 0 : end.start() if end else len(text)]


def _r_strings(value: object) -> list[str]:
    if isinstance(value, RObject):
        value = value.value
    if not isinstance(value, list):
        raise ValueError(f"expected an R character vector, got {type(value).__name__}")
    return ["" if v is None else str(v) for v in value]


def raw_sentences(root: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(source id, raw sentence)`` from a directory where the Debian packages were ``dpkg -x``-ed."""
    rlib = root / "usr/lib/R/site-library"
    austen = read_lazyload_db(rlib / "janeaustenr/data/Rdata")
    for name, source in _AUSTEN.items():
        for s in sentences_from_paragraphs(paragraphs_from_lines(_r_strings(austen[name]))):
            yield source, s
    moby = "\n".join(_r_strings(read_lazyload_db(rlib / "tokenizers/data/Rdata")["mobydick"]))
    for s in sentences_from_paragraphs(paragraphs_from_lines(_gutenberg_body(moby).splitlines())):
        yield "melville-mobydick", s
    for s in _r_strings(read_lazyload_db(rlib / "stringr/data/Rdata")["sentences"]):
        yield "harvard", s
    for name in ("declaration", "constitution"):
        path = root / f"usr/share/state/us-{name}.gz"
        with gzip.open(path, "rt", encoding="latin-1") as f:
            for s in sentences_from_paragraphs(paragraphs_from_lines(f)):
                yield f"us-{name}", s
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"usr/share/wordnet/data.{pos}"
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # licence header
                for example in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]):
                    example = example.strip()
                    if example and example[-1] not in ".!?":
                        example += "."
                    yield "wordnet", example[:1].upper() + example[1:]


def build_sentences(
    raw: Iterable[tuple[str, str]], min_words: int = MIN_WORDS, max_words: int = MAX_WORDS
) -> list[Sentence]:
    """Clean, filter and de-duplicate (by transcript, first occurrence kept, document order preserved)."""
    seen: set[str] = set()
    out: list[Sentence] = []
    for source, sentence in raw:
        text = clean_sentence(sentence, min_words, max_words)
        if text is None:
            continue
        key = to_transcript(text)
        if key in seen:
            continue
        seen.add(key)
        out.append(Sentence(source, text))
    return out


# --- the shipped file ----------------------------------------------------------------------------------


def write_sentences(path: Path, sentences: Sequence[Sentence], header: Sequence[str]) -> None:
    """Write the list as gzip with a fixed mtime (so regenerating gives identical bytes), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    body = io.StringIO()
    for line in header:
        body.write(f"# {line}\n")
    for s in sentences:
        body.write(f"{s.source}\t{s.text}\n")
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f,
    ):
        f.write(body.getvalue().encode("utf-8"))
    tmp.replace(path)


def read_sentences(path: str | Path) -> list[Sentence]:
    """Read a sentence list written by :func:`write_sentences` (gzip or plain text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: sentence list not found (regenerate it with local/make_synth_text.sh)"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[1]:
                raise ValueError(f"{path}:{n}: expected '<source>\\t<sentence>', got {line!r}")
            out.append(Sentence(parts[0], parts[1]))
    if not out:
        raise ValueError(f"{path}: no sentences (regenerate it with local/make_synth_text.sh)")
    return out


def word_counts(sentences: Iterable[Sentence]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for s in sentences:
        counts.update(s.transcript.split())
    return counts


def restrict_vocabulary(sentences: Sequence[Sentence], max_vocab: int | None) -> list[Sentence]:
    """Keep sentences made only of the ``max_vocab`` most frequent words of the list (None keeps all).

    A tiny corpus cannot teach a model words it hears once; drawing all splits from a common vocabulary keeps
    dev/test words seen in training. Ties in frequency are broken alphabetically so the choice is stable.
    """
    if max_vocab is None:
        return list(sentences)
    if max_vocab <= 0:
        raise ValueError(f"max_vocab must be positive, got {max_vocab}")
    ranked = sorted(word_counts(sentences).items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = {w for w, _ in ranked[:max_vocab]}
    return [s for s in sentences if all(w in vocab for w in s.transcript.split())]


# --- regeneration from the Debian packages -------------------------------------------------------------


def _deb_field(deb: Path, field: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), field], check=True, capture_output=True, text=True
    ).stdout.strip()


def extract_debs(deb_dir: Path, dest: Path) -> dict[str, str]:
    """``dpkg-deb -x`` every needed package from ``deb_dir`` into ``dest``; return package -> version."""
    versions: dict[str, str] = {}
    for deb in sorted(deb_dir.glob("*.deb")):
        package = _deb_field(deb, "Package")
        if package in PACKAGES:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
            versions[package] = _deb_field(deb, "Version")
    missing = [p for p in PACKAGES if p not in versions]
    if missing:
        raise FileNotFoundError(
            f"{deb_dir}: missing .deb for {', '.join(missing)} (run: apt-get download {' '.join(PACKAGES)})"
        )
    return versions


def provenance_header(versions: dict[str, str], sentences: Sequence[Sentence]) -> list[str]:
    counts = collections.Counter(s.source for s in sentences)
    lines = [
        "Sentences for the rnnt-kd synthetic corpus: <source>\\t<text>; regenerate: local/make_synth_text.sh",
        f"{len(sentences)} sentences of {MIN_WORDS}-{MAX_WORDS} words, de-duplicated by transcript",
        "source\tsentences\tdebian package\twhere\tlicence of the text",
    ]
    for source, (package, where, licence) in SOURCES.items():
        lines.append(
            f"{source}\t{counts.get(source, 0)}\t{package} {versions.get(package, '?')}\t{where}\t{licence}"
        )
    return lines


def write_licences(path: Path, header: Sequence[str]) -> None:
    text = "\n".join(header) + "\n\nNotice required by the WordNet licence for the 'wordnet' sentences:\n\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + WORDNET_NOTICE)
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Build the synthetic corpus sentence list from Debian .debs."
    )
    parser.add_argument("--deb-dir", type=Path, required=True, help=f"folder with the .debs of {PACKAGES}")
    parser.add_argument("--out", type=Path, default=Path("local/data/sentences.txt.gz"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        versions = extract_debs(args.deb_dir, Path(tmp))
        sentences = build_sentences(raw_sentences(Path(tmp)))
    header = provenance_header(versions, sentences)
    write_sentences(args.out, sentences, header)
    write_licences(args.out.with_name("sentences.LICENCES.txt"), header)
    for line in header[1:]:
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
