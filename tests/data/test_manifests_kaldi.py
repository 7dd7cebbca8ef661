"""Import of Kaldi data dirs: mixed sample rates, piped wav.scp entries, segments, and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from kd.data.errors import MissingFileError
from kd.data.kaldi import load_kaldi_dir, prepare_kaldi_manifests


def test_mixed_rates_pipes_and_segments_resampled_to_16k(kaldi_dir: Path) -> None:
    recs, sups = load_kaldi_dir(kaldi_dir, num_jobs=2)
    assert sorted(recs.ids) == ["rec_a", "rec_b", "rec_c"]
    assert recs["rec_b"].sources[0].type == "command"
    for rec, seconds in (("rec_a", 1.5), ("rec_b", 1.2), ("rec_c", 3.0)):
        assert recs[rec].sampling_rate == 16000
        assert recs[rec].duration == pytest.approx(seconds, abs=1e-3)
        audio = recs[rec].load_audio()
        assert audio.shape == (1, recs[rec].num_samples)
        assert np.abs(audio).max() > 0.1
    by_id = {s.id: s for s in sups}
    assert sorted(by_id) == ["a", "b", "c1", "c2"]
    assert by_id["a"].duration == pytest.approx(1.5, abs=1e-3)  # end -1: to the end of the recording
    assert (by_id["c1"].start, by_id["c1"].end) == pytest.approx((0.10, 1.40))
    assert by_id["c2"].text == "THE RIVER BANK" and by_id["c2"].speaker == "spk3"


def test_resampled_audio_keeps_the_tone(kaldi_dir: Path) -> None:
    """The 8 kHz file's 200 Hz tone must still be at 200 Hz after resampling to 16 kHz."""
    recs, _ = load_kaldi_dir(kaldi_dir)
    audio = recs["rec_a"].load_audio()[0]
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * 16000 / len(audio)
    assert peak_hz == pytest.approx(200, abs=2)


def test_missing_text_names_the_file(kaldi_dir: Path) -> None:
    (kaldi_dir / "text").unlink()
    with pytest.raises(MissingFileError, match=str(kaldi_dir / "text")):
        prepare_kaldi_manifests(kaldi_dir, "train", kaldi_dir.parent / "m", "mine")
    assert not (kaldi_dir.parent / "m").exists()


def test_bad_utterances_are_counted_skips(kaldi_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Missing file, failing command, missing or empty transcript: each utterance dropped and logged."""
    (kaldi_dir / "wav.scp").write_text(
        (kaldi_dir / "wav.scp").read_text() + f"rec_d {kaldi_dir}/nowhere.wav\nrec_e false |\n"
    )
    (kaldi_dir / "segments").write_text(
        (kaldi_dir / "segments").read_text() + "d rec_d 0 1\ne rec_e 0 1\nc3 rec_c 2.96 3.0\n"
    )
    text = (kaldi_dir / "text").read_text().replace("b GOOD MORNING", "b")
    (kaldi_dir / "text").write_text(text + "d SOME WORDS\ne MORE WORDS\n")
    with caplog.at_level(logging.WARNING):
        recs, sups = load_kaldi_dir(kaldi_dir)
    assert sorted(s.id for s in sups) == ["a", "c1", "c2"]
    assert sorted(recs.ids) == ["rec_a", "rec_c"]
    assert "skipped 2 utterance(s) without usable audio" in caplog.text
    assert "nowhere.wav" in caplog.text and "command exited with 1" in caplog.text
    assert (
        "skipped 2 utterance(s) without a transcript" in caplog.text and "c3: no line in text" in caplog.text
    )


def test_segment_outside_recording_names_the_line(kaldi_dir: Path) -> None:
    (kaldi_dir / "segments").write_text("a rec_a 0 9.0\n")
    with pytest.raises(ValueError, match=rf"{kaldi_dir / 'segments'}:1: segment a"):
        load_kaldi_dir(kaldi_dir)


def test_without_segments_each_recording_is_an_utterance(
    kaldi_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (kaldi_dir / "segments").unlink()
    (kaldi_dir / "wav.scp").write_text((kaldi_dir / "wav.scp").read_text() + "rec_d /nowhere/d.wav\n")
    (kaldi_dir / "text").write_text("rec_a HELLO\nrec_b GOOD MORNING\nrec_d LOST\n")
    (kaldi_dir / "utt2spk").unlink()
    with caplog.at_level(logging.WARNING):
        recs, sups = load_kaldi_dir(kaldi_dir)
    assert sorted((s.id, s.recording_id, s.speaker) for s in sups) == [
        ("rec_a", "rec_a", "rec_a"),
        ("rec_b", "rec_b", "rec_b"),
    ]
    assert sups[0].duration == pytest.approx(recs[sups[0].recording_id].duration)
    assert "no utt2spk" in caplog.text
    assert "skipped 1 utterance(s) without usable audio" in caplog.text and "/nowhere/d.wav" in caplog.text
    assert (
        "skipped 1 utterance(s) without a transcript" in caplog.text
        and "rec_c: no line in text" in caplog.text
    )
