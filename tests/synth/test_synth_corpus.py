"""End to end: the corpus built by the CLI with the installed TTS engines (espeak-ng at least).

One small corpus is built per session and shared; tests that modify a corpus work on a copy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kd.bin import make_synth_corpus
from kd.data.synth.corpus import build_corpus
from kd.data.synth.plan import SIZES, SPLITS
from kd.data.synth.voices import NoVoicesError

ARGS = ["--size", "test", "--hours", "0.02", "--quiet"]


def _build(root: Path, seed: int, nj: int) -> Path:
    assert make_synth_corpus.main(["--out", str(root), "--seed", str(seed), "--nj", str(nj), *ARGS]) == 0
    return root


def _files(root: Path) -> dict[str, str]:
    """Relative path -> sha1 of every audio and transcript file."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.suffix in (".flac", ".txt") and p.name != "SPEAKERS.txt"
    }


def _speakers(root: Path) -> list[dict[str, str]]:
    rows = []
    for line in (root / "SPEAKERS.txt").read_text().splitlines():
        if line.startswith(";"):
            continue
        f = [x.strip() for x in line.split("|")]
        rows.append({"id": f[0], "split": f[2], "engine": f[4], "voice": f[5], "family": f[6]})
    return rows


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("synth") / "corpus", seed=11, nj=2)


def test_layout_is_ingested_by_lhotse_librispeech(corpus: Path) -> None:
    from lhotse.recipes import prepare_librispeech

    info = json.loads((corpus / "corpus.json").read_text())
    manifests = prepare_librispeech(corpus, dataset_parts=["train", "dev", "test"])
    for split in ("train", "dev", "test"):
        recs, sups = manifests[split]["recordings"], manifests[split]["supervisions"]
        assert len(recs) == len(sups) == info["utterances"][split] > 0
        trans = {}
        for t in (corpus / split).rglob("*.trans.txt"):
            trans.update(line.split(" ", 1) for line in t.read_text().splitlines())
        for sup in sups:
            assert sup.text == trans[sup.id]
            assert sup.speaker == sup.id.split("-")[0]
        assert {r.sampling_rate for r in recs} == {16000}
        assert sum(r.duration for r in recs) / 3600 == pytest.approx(info["hours"][split], abs=1e-3)


def test_audio_is_16k_mono_flac_without_digital_silence(corpus: Path) -> None:
    flacs = sorted(corpus.rglob("*.flac"))
    assert len(flacs) == sum(json.loads((corpus / "corpus.json").read_text())["utterances"].values())
    for path in flacs:
        info = sf.info(str(path))
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16000, 1)
        x, _ = sf.read(str(path), dtype="int16")
        zero_run = np.diff(np.flatnonzero(np.concatenate([[1], x, [1]]))).max() - 1
        assert zero_run < 50, f"{path}: {zero_run} consecutive zero samples"
        assert 0.5 < len(x) / 16000 < 30


def test_unlabelled_transcripts_are_withheld(corpus: Path) -> None:
    assert not list((corpus / "unlabelled").rglob("*.txt"))
    flacs = {p.stem for p in (corpus / "unlabelled").rglob("*.flac")}
    held = {}
    for t in (corpus / "unlabelled-transcripts").glob("*.trans.txt"):
        held.update(line.split(" ", 1) for line in t.read_text().splitlines())
    assert flacs and set(held) == flacs


def test_lm_text_leaves_out_every_sentence_of_dev_test_and_unlabelled(corpus: Path) -> None:
    lm = gzip.decompress((corpus / "lm-text.txt.gz").read_bytes()).decode().splitlines()
    assert len(lm) == json.loads((corpus / "corpus.json").read_text())["sentences"]["lm_text"] > 0
    lines = {s: [] for s in SPLITS}
    for split in SPLITS:
        folder = corpus / ("unlabelled-transcripts" if split == "unlabelled" else split)
        for t in folder.rglob("*.trans.txt"):
            lines[split] += [line.split(" ", 1)[1] for line in t.read_text().splitlines()]
    text = "\n".join(lm)
    # the test corpus reads one sentence per utterance: whole transcripts are whole sentences
    assert all(t in lm for t in lines["train"])
    assert not any(t in lm for s in ("dev", "test", "unlabelled") for t in lines[s])
    assert text == text.upper()


def test_splits_are_disjoint_by_speaker_and_family(corpus: Path) -> None:
    rows = _speakers(corpus)
    assert {r["split"] for r in rows} == set(SPLITS)
    fams = {s: {r["family"] for r in rows if r["split"] == s} for s in SPLITS}
    assert not fams["dev"] & fams["test"]
    for held in ("dev", "test"):
        assert not fams[held] & (fams["train"] | fams["unlabelled"])
    on_disk = {s: {p.name for p in (corpus / s).iterdir()} for s in SPLITS}
    for s in SPLITS:
        assert on_disk[s] == {r["id"] for r in rows if r["split"] == s}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not on_disk[a] & on_disk[b]
    info = json.loads((corpus / "corpus.json").read_text())
    assert info["seed"] == 11 and info["size"] == "test" and "make_synth_corpus" in info["command"]


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(corpus: Path, tmp_path: Path) -> None:
    again = _build(tmp_path / "again", seed=11, nj=1)  # another worker count must not matter
    assert _files(again) == _files(corpus)
    assert (again / "SPEAKERS.txt").read_text() == (corpus / "SPEAKERS.txt").read_text()
    assert (again / "lm-text.txt.gz").read_bytes() == (corpus / "lm-text.txt.gz").read_bytes()
    other = _build(tmp_path / "other", seed=12, nj=2)
    assert _files(other) != _files(corpus)
    assert {line for t in other.rglob("*.trans.txt") for line in t.read_text().splitlines()} != {
        line for t in corpus.rglob("*.trans.txt") for line in t.read_text().splitlines()
    }


def test_resume_remakes_only_missing_or_broken_files(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(corpus, root)
    before = _files(root)
    flacs = sorted(root.rglob("*.flac"))
    deleted, broken = flacs[3], flacs[-2]
    deleted.unlink()
    broken.write_bytes(broken.read_bytes()[:100])
    kept = {p: p.stat().st_mtime_ns for p in flacs if p not in (deleted, broken)}
    _build(root, seed=11, nj=2)
    assert _files(root) == before
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())


def test_resume_refuses_other_settings(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(corpus, root)
    with pytest.raises(ValueError, match="other settings.*seed"):
        build_corpus(root, SIZES["test"].scaled(hours=0.02), seed=99, progress=False)
    code = make_synth_corpus.main(["--out", str(root), "--seed", "99", *ARGS])
    assert code == 2


def test_no_tts_engine_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(NoVoicesError, match="espeak-ng"):
        build_corpus(tmp_path / "c", SIZES["test"], seed=1, progress=False)
    assert make_synth_corpus.main(["--out", str(tmp_path / "c"), *ARGS]) == 2
    assert "no TTS voice found" in capsys.readouterr().err
