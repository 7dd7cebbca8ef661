"""Small corpora the data tests build for themselves: LibriSpeech-layout and Libri-Light trees, Kaldi dirs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

# fmt: off
WORDS = (
    "THE", "QUICK", "BROWN", "FOX", "JUMPS", "OVER", "A", "LAZY", "DOG", "WHILE", "SEVEN", "WISE", "OWLS",
    "WATCH", "FROM", "AN", "OLD", "OAK", "NEAR", "RIVER", "BANK", "WHERE", "CHILDREN", "PLAY", "WITH",
    "KITES", "AND", "PAPER", "BOATS", "EVERY", "SUNNY", "MORNING",
)
# fmt: on


def write_audio(path: Path, seconds: float, sampling_rate: int = 16000, seed: int = 0, **kwargs) -> Path:
    """A tone plus noise (distinct per seed), written with soundfile in the format of ``path``'s suffix."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sampling_rate)) / sampling_rate
    freq = 150 + 50 * (seed % 7)
    samples = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples.astype(np.float32), sampling_rate, **kwargs)
    return path


def sentence(seed: int, num_words: int = 4) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=num_words))


def make_librispeech_tree(
    root: Path,
    parts: dict[str, int],
    unlabelled: dict[str, int] | None = None,
    speakers: int = 2,
) -> Path:
    """``<root>/<part>/<spk>/<chap>/<spk>-<chap>-<utt>.flac`` + ``<spk>-<chap>.trans.txt``.

    ``parts`` maps a labelled part to its utterances per speaker; ``unlabelled`` likewise (no transcripts).
    Durations cycle through 0.6-1.6 s so the batches have different lengths.
    """
    seed = 0
    for part, n_utts in {**parts, **(unlabelled or {})}.items():
        labelled = part in parts
        for s in range(speakers):
            spk, chap = f"{100 + 10 * s + len(part)}", f"{200 + s}"
            chap_dir = root / part / spk / chap
            lines = []
            for u in range(n_utts):
                utt = f"{spk}-{chap}-{u:04d}"
                write_audio(chap_dir / f"{utt}.flac", 0.6 + 0.25 * (seed % 5), seed=seed)
                lines.append(f"{utt} {sentence(seed)}")
                seed += 1
            if labelled:
                (chap_dir / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def make_librilight_tree(root: Path, subset: str = "small", files: int = 3) -> Path:
    """``<root>/<subset>/<speaker>/<book>/<file>.flac`` with Libri-Light's ``<file>.json`` metadata."""
    import json

    for i in range(files):
        speaker = str(1000 + i % 2)
        book_dir = root / subset / speaker / f"book_{i % 2}_librivox_64kb_mp3"
        flac = write_audio(book_dir / f"chapter{i:02d}_64kb.flac", 3.0, seed=100 + i)
        meta = {"speaker": speaker, "voice_activity": [[0.2, 1.4], [1.7, 2.9]], "snr": 12.5, "book_meta": {}}
        flac.with_suffix(".json").write_text(json.dumps(meta))
    return root


@dataclass
class PreparedCorpus:
    """Where the session fixture ``prepared`` put its corpus, manifests and features."""

    corpus_dir: Path
    manifest_dir: Path
    fbank_dir: Path
    prefix: str = "synth"
