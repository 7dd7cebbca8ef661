"""The data-stage command-line tools, run as run.sh runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_corpora import make_librilight_tree, make_librispeech_tree
from lhotse import CutSet

from kd.bin import compute_fbank, prepare_manifests, train_bpe, validate_manifests
from kd.data.cli import run_main
from kd.data.io import cuts_path, manifest_path
from kd.data.tokenizer import Tokenizer


def test_librispeech_layout_to_bpe_and_validation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = make_librispeech_tree(tmp_path / "corpus", {"train": 4, "dev": 1}, unlabelled={"unlabelled": 1})
    data = tmp_path / "data" / "synth"
    prepare_manifests.main(
        ["librispeech", "--corpus-dir", str(corpus), "--parts", "train", "dev",
         "--unlabelled-parts", "unlabelled", "--prefix", "synth", "--output-dir", str(data / "manifests"),
         "--nj", "2"]
    )  # fmt: skip
    parts = ["train", "dev", "unlabelled"]
    assert all(manifest_path(data / "manifests", "synth", "supervisions", p).is_file() for p in parts)
    compute_fbank.main(
        ["--manifest-dir", str(data / "manifests"), "--prefix", "synth", "--parts", *parts,
         "--output-dir", str(data / "fbank"), "--nj", "1", "--extractor", "lhotse"]
    )  # fmt: skip
    cuts = [str(cuts_path(data / "fbank", "synth", p)) for p in parts]
    # The labelled cuts of both parts: this tiny train part alone does not use every letter dev uses.
    train_bpe.main(["--cuts", *cuts[:2], "--vocab-size", "30", "--output-dir", str(data / "lang_bpe_30")])
    assert Tokenizer(data / "lang_bpe_30" / "bpe.model").vocab_size == 30
    validate_manifests.main(
        ["--cuts", *cuts, "--manifest-dir", str(data / "manifests"), "--prefix", "synth", "--parts", *parts,
         "--bpe-model", str(data / "lang_bpe_30" / "bpe.model")]
    )  # fmt: skip

    # Transcripts the tokenizer cannot spell make validation fail, listing them.
    trans = next((corpus / "dev").rglob("*.trans.txt"))
    trans.write_text(trans.read_text().lower())
    prepare_manifests.main(
        ["librispeech", "--corpus-dir", str(corpus), "--parts", "dev", "--prefix", "synth",
         "--output-dir", str(data / "manifests"), "--force"]
    )  # fmt: skip
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_main(
            validate_manifests.main,
            ["--manifest-dir", str(data / "manifests"), "--prefix", "synth", "--parts", "dev",
             "--bpe-model", str(data / "lang_bpe_30" / "bpe.model")],
        )  # fmt: skip
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert (
        "synth_supervisions_dev.jsonl.gz" in err
        and "are not in" in err
        and "error: 1 problem(s) in 1 manifest(s)" in err
    )


def test_librilight_subcommand(tmp_path: Path) -> None:
    corpus = make_librilight_tree(tmp_path / "ll", "small", files=2)
    prepare_manifests.main(
        ["librilight", "--corpus-dir", str(corpus), "--parts", "small", "--prefix", "librilight",
         "--output-dir", str(tmp_path / "m")]
    )  # fmt: skip
    compute_fbank.main(
        ["--manifest-dir", str(tmp_path / "m"), "--prefix", "librilight", "--parts", "small",
         "--output-dir", str(tmp_path / "fbank"), "--extractor", "lhotse"]
    )  # fmt: skip
    cuts = CutSet.from_file(cuts_path(tmp_path / "fbank", "librilight", "small")).to_eager()
    # One cut per voice-activity segment, cut out of its longer recording.
    assert len(cuts) == 4 and all(c.duration == pytest.approx(1.2) for c in cuts)
    assert all(c.id == c.supervisions[0].id and c.load_features().shape == (120, 80) for c in cuts)


def test_kaldi_subcommand_and_bad_input_exit_status(kaldi_dir: Path, tmp_path: Path) -> None:
    args = ["kaldi", "--data-dir", str(kaldi_dir), "--part", "train", "--prefix", "mine", "--output-dir"]
    prepare_manifests.main([*args, str(tmp_path / "m")])
    assert manifest_path(tmp_path / "m", "mine", "supervisions", "train").is_file()

    (kaldi_dir / "text").unlink()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "kd.bin.prepare_manifests", *args, str(tmp_path / "m2")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"error: {kaldi_dir / 'text'}: not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m2").exists()
