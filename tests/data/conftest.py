"""Fixtures of the data tests (the corpora they are built from are in fake_corpora.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_corpora import PreparedCorpus, make_librispeech_tree, write_audio


@pytest.fixture
def kaldi_dir(tmp_path: Path) -> Path:
    """A Kaldi data dir: an 8 kHz wav, a 22.05 kHz flac read through a pipe, and a 16 kHz wav cut by segments.

    Utterances: a (8 kHz, whole file), b (22.05 kHz via ``cat ... |``), c1 and c2 (segments of c).
    """
    audio = tmp_path / "audio"
    a = write_audio(audio / "a.wav", 1.5, 8000, seed=1)
    b = write_audio(audio / "b.flac", 1.2, 22050, seed=2)
    c = write_audio(audio / "c.wav", 3.0, 16000, seed=3)
    d = tmp_path / "kaldi" / "train"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text(f"rec_a {a}\nrec_b cat {b} |\nrec_c {c}\n")
    (d / "segments").write_text("a rec_a 0 -1\nb rec_b 0.0 1.2\nc1 rec_c 0.10 1.40\nc2 rec_c 1.5 2.95\n")
    (d / "text").write_text("a HELLO WORLD\nb GOOD MORNING\nc1 SEVEN WISE OWLS\nc2 THE RIVER BANK\n")
    (d / "utt2spk").write_text("a spk1\nb spk2\nc1 spk3\nc2 spk3\n")
    return d


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedCorpus:
    """A LibriSpeech-layout corpus (train, dev, unlabelled) with manifests and stored fbank, built once."""
    from kd.data.features import compute_fbank
    from kd.data.librispeech import prepare_librispeech_manifests

    root = tmp_path_factory.mktemp("prepared")
    corpus = make_librispeech_tree(root / "corpus", {"train": 6, "dev": 2}, unlabelled={"unlabelled": 3})
    out = PreparedCorpus(corpus, root / "manifests", root / "fbank")
    prepare_librispeech_manifests(corpus, ["train", "dev"], out.manifest_dir, out.prefix, ["unlabelled"])
    compute_fbank(
        out.manifest_dir, out.prefix, ["train", "dev", "unlabelled"], out.fbank_dir, extractor="lhotse"
    )
    return out
