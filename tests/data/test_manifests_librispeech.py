"""Manifests of corpora in LibriSpeech's layout: labelled and unlabelled parts, and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fake_corpora import make_librispeech_tree
from lhotse import RecordingSet, SupervisionSet

from kd.data.errors import AudioError, CorpusLayoutError, TranscriptError
from kd.data.io import manifest_path
from kd.data.librispeech import prepare_librispeech_manifests


def _load(out: Path, prefix: str, part: str) -> tuple[RecordingSet, SupervisionSet]:
    return (
        RecordingSet.from_file(manifest_path(out, prefix, "recordings", part)).to_eager(),
        SupervisionSet.from_file(manifest_path(out, prefix, "supervisions", part)).to_eager(),
    )


def test_labelled_and_unlabelled_parts(tmp_path: Path) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 3, "dev": 2}, unlabelled={"unlabelled": 2})
    out = tmp_path / "manifests"
    prepare_librispeech_manifests(
        corpus, ["train", "dev"], out, "synth", unlabelled_parts=["unlabelled"], num_jobs=2
    )

    recs, sups = _load(out, "synth", "train")
    assert len(recs) == len(sups) == 6
    trans = {}
    for path in (corpus / "train").rglob("*.trans.txt"):
        for line in path.read_text().splitlines():
            utt, text = line.split(maxsplit=1)
            trans[utt] = text
    assert {s.id: s.text for s in sups} == trans
    for sup in sups:
        rec = recs[sup.recording_id]
        assert rec.sampling_rate == 16000
        assert sup.start == 0 and sup.duration == pytest.approx(rec.duration)
        assert sup.speaker == sup.id.split("-")[0]

    recs, sups = _load(out, "synth", "unlabelled")
    flacs = sorted(p.name.removesuffix(".flac") for p in (corpus / "unlabelled").rglob("*.flac"))
    assert sorted(recs.ids) == flacs
    assert all(s.text is None for s in sups)
    assert all(s.duration == pytest.approx(recs[s.recording_id].duration) for s in sups)


def test_existing_part_is_skipped_unless_forced(tmp_path: Path) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 2}, speakers=1)
    out = tmp_path / "manifests"
    prepare_librispeech_manifests(corpus, ["train"], out, "synth")
    path = manifest_path(out, "synth", "recordings", "train")
    path.write_bytes(b"sentinel")
    prepare_librispeech_manifests(corpus, ["train"], out, "synth")
    assert path.read_bytes() == b"sentinel"
    prepare_librispeech_manifests(corpus, ["train"], out, "synth", force=True)
    assert len(RecordingSet.from_file(path)) == 2


def test_missing_flac_is_counted_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 3}, speakers=2)
    missing = sorted((corpus / "train").rglob("*.flac"))[1]
    missing.unlink()
    with caplog.at_level(logging.WARNING):
        prepare_librispeech_manifests(corpus, ["train"], tmp_path / "m", "synth")
    recs, sups = _load(tmp_path / "m", "synth", "train")
    assert len(recs) == len(sups) == 5
    assert missing.stem not in recs.ids
    assert "skipping 1 of 6 utterances" in caplog.text and str(missing) in caplog.text


def test_all_flacs_missing_is_a_layout_error(tmp_path: Path) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 2}, speakers=1)
    for flac in (corpus / "train").rglob("*.flac"):
        flac.rename(corpus / "train" / flac.name)  # flattened: audio no longer next to its transcript
    with pytest.raises(CorpusLayoutError, match="none of the 2 transcribed utterances"):
        prepare_librispeech_manifests(corpus, ["train"], tmp_path / "m", "synth")
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_missing_part_dir_names_it_and_the_layout(tmp_path: Path) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 1}, speakers=1)
    with pytest.raises(CorpusLayoutError) as e:
        prepare_librispeech_manifests(corpus, ["train", "dev-clean"], tmp_path / "m", "synth")
    assert str(corpus / "dev-clean") in str(e.value) and "<speaker>-<chapter>.trans.txt" in str(e.value)
    # The part before the bad one is complete; nothing half-written for the bad one.
    assert manifest_path(tmp_path / "m", "synth", "recordings", "train").is_file()
    assert not list((tmp_path / "m").glob("*dev-clean*")) and not list((tmp_path / "m").glob(".tmp*"))


def test_misplaced_transcript_is_a_layout_error(tmp_path: Path) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 1}, speakers=1)
    trans = next((corpus / "train").rglob("*.trans.txt"))
    trans.rename(corpus / "train" / trans.name)
    with pytest.raises(CorpusLayoutError, match="wrong place"):
        prepare_librispeech_manifests(corpus, ["train"], tmp_path / "m", "synth")


def test_part_without_transcripts_suggests_unlabelled(tmp_path: Path) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {}, unlabelled={"extra": 1}, speakers=1)
    with pytest.raises(CorpusLayoutError, match="--unlabelled-parts"):
        prepare_librispeech_manifests(corpus, ["extra"], tmp_path / "m", "synth")


def test_empty_transcript_names_file_and_line(tmp_path: Path) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 3}, speakers=1)
    trans = next((corpus / "train").rglob("*.trans.txt"))
    lines = trans.read_text().splitlines()
    lines[1] = lines[1].split()[0] + "  "
    trans.write_text("\n".join(lines) + "\n")
    with pytest.raises(TranscriptError, match=rf"{trans}:2 \({lines[1].split()[0]}\)"):
        prepare_librispeech_manifests(corpus, ["train"], tmp_path / "m", "synth")
    assert not list((tmp_path / "m").glob("*.jsonl.gz"))


def test_unreadable_flac_names_the_file(tmp_path: Path) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 2}, unlabelled={"unlab": 2}, speakers=1)
    for part in ("train", "unlab"):
        bad = sorted((corpus / part).rglob("*.flac"))[0]
        bad.write_bytes(b"not audio at all" * 64)
        with pytest.raises(AudioError, match=str(bad)):
            if part == "train":
                prepare_librispeech_manifests(corpus, ["train"], tmp_path / "m", "synth")
            else:
                prepare_librispeech_manifests(corpus, [], tmp_path / "m", "synth", unlabelled_parts=["unlab"])
    assert not list((tmp_path / "m").glob("*.jsonl.gz"))
