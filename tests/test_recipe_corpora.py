"""run.sh end to end on small corpora the tests make: LibriSpeech-layout trees (with Libri-Light and
unlabelled parts) and Kaldi data dirs at 8 kHz, through the data stages to a trained (tiny) teacher.

run.sh works in its own directory (data/, exp/ and download/ sit next to it), so every test runs it from a
recipe directory of its own under tmp_path whose run.sh, path.sh, utils/, local/, egs/ and kd/ are symlinks
into the repository, as Kaldi recipes link steps/ and utils/: nothing is written into the repository.
Its tools/install.sh does nothing: the stages run in the Python environment of the tests (tools/test.sh
installs that first), and an install started from a temporary directory would point the shared .venv at it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lhotse import CutSet, RecordingSet

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))

from fake_corpora import make_librilight_tree, make_librispeech_tree, sentence, write_audio  # noqa: E402
from tiny_transducer import TINY_MODEL  # noqa: E402

from kd.data.features import FRAME_SHIFT, NUM_MEL_BINS, SAMPLING_RATE  # noqa: E402
from kd.data.io import cuts_path, manifest_path  # noqa: E402
from kd.data.tokenizer import Tokenizer  # noqa: E402
from kd.train.checkpoint import load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("run.sh", "path.sh", "utils", "local", "egs", "kd")
VOCAB_SIZE = 30  # the fake corpora use 32 words

# The tiny teacher, one epoch.
TINY_TEACHER = {
    "model": TINY_MODEL,
    "data": {"max_duration": 10.0, "num_buckets": 2},
    "optim": {"warmup_batches": 2},
    "loss": {"warm_step": 2},
    "train": {"num_epochs": 1, "log_interval": 1, "save_every_n": 0, "num_threads": 1},
}
# A token LM as small, so that stage 3's LM step runs in the tests too.
TINY_LM = {"embedding_dim": 8, "hidden_dim": 8, "num_layers": 1, "num_epochs": 1, "num_threads": 1}


def make_recipe(tmp_path: Path) -> Path:
    """A recipe directory under ``tmp_path`` that runs the repository's run.sh, and a tiny teacher config."""
    recipe = tmp_path / "recipe"
    (recipe / "tools").mkdir(parents=True)
    for name in LINKED:
        (recipe / name).symlink_to(ROOT / name)
    (recipe / "tools" / "install.sh").write_text("# The tests' environment is already installed.\n")
    (recipe / "tiny_teacher.yaml").write_text(yaml.safe_dump(TINY_TEACHER))
    (recipe / "tiny_lm.yaml").write_text(yaml.safe_dump(TINY_LM))
    return recipe


def run_recipe(recipe: Path, *args: str | Path | int, check: bool = True) -> subprocess.CompletedProcess:
    """``recipe/run.sh ARGS`` on the CPU with one thread, in the tests' Python environment."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        ["bash", str(recipe / "run.sh"), "--nj", "1", "--device", "cpu", *map(str, args)],
        cwd=recipe,
        env=env,
        capture_output=True,
        text=True,
    )
    if check:
        assert out.returncode == 0, f"run.sh: {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def texts(cuts: CutSet) -> list[str | None]:
    return [c.supervisions[0].text for c in cuts]


@pytest.mark.slow
def test_librispeech_960h_with_unlabelled_parts_to_teacher(tmp_path: Path) -> None:
    """Paper (d)'s data: the three train parts joined for training, Libri-Light as unlabelled audio; with it a
    transcribed LibriSpeech-layout part used as unlabelled audio, as paper (c) uses train-clean-360."""
    train_parts = {"train-clean-100": 2, "train-clean-360": 1, "train-other-500": 1}
    corpus = make_librispeech_tree(
        tmp_path / "LibriSpeech", {**train_parts, "dev-clean": 1, "test-clean": 1, "extra-books": 1}
    )
    librilight = make_librilight_tree(tmp_path / "librilight", "small", files=2)
    recipe = make_recipe(tmp_path)
    run_recipe(
        recipe, "--corpus", "librispeech", "--librispeech-dir", corpus,
        "--librispeech-parts", "train-clean-100 dev-clean test-clean", "--full-libri", "true",
        "--librispeech-unlabelled-parts", "extra-books",
        "--librilight-dir", librilight, "--librilight-parts", "small",
        "--vocab-size", VOCAB_SIZE, "--teacher-config", recipe / "tiny_teacher.yaml",
        "--lm-config", recipe / "tiny_lm.yaml", "--stop-stage", 4,
    )  # fmt: skip

    data = recipe / "data" / "librispeech"
    on_disk = [*train_parts, "dev-clean", "test-clean", "extra-books", "small"]
    for part in on_disk:
        for kind in ("recordings", "supervisions"):
            assert manifest_path(data / "manifests", "librispeech", kind, part).is_file(), (kind, part)
    cuts = {p: CutSet.from_file(cuts_path(data / "fbank", "librispeech", p)) for p in on_disk}
    assert all(c.features.num_features == NUM_MEL_BINS for p in cuts for c in cuts[p])
    train = CutSet.from_file(cuts_path(data / "fbank", "librispeech", "train-960"))
    assert sorted(train.ids) == sorted(i for p in train_parts for i in cuts[p].ids)
    assert len(train) == 2 * sum(train_parts.values()) and all(texts(train))
    unlabelled = CutSet.from_file(cuts_path(data / "fbank", "librispeech", "unlabelled"))
    assert sorted(unlabelled.ids) == sorted([*cuts["extra-books"].ids, *cuts["small"].ids])
    # extra-books' transcripts are dropped; Libri-Light: 2 files x 2 voice-activity segments.
    assert len(unlabelled) == 2 + 4 and texts(unlabelled) == [None] * 6

    assert Tokenizer(data / f"lang_bpe_{VOCAB_SIZE}" / "bpe.model").vocab_size == VOCAB_SIZE
    teacher = recipe / "exp" / "librispeech" / "teacher"
    assert (teacher / "epoch-1.pt").is_file()
    paths = yaml.safe_load((teacher / "config.yaml").read_text())["paths"]
    # The teacher trains on train-960 and its copies at speeds 0.9 and 1.1 (run.sh --speed-perturb).
    assert paths["train_cuts"] == "data/librispeech/fbank/librispeech_cuts_train-960_sp.jsonl.gz"
    perturbed = CutSet.from_file(cuts_path(data / "fbank", "librispeech", "train-960_sp"))
    assert list(perturbed.ids) == [*train.ids, *(f"{i}_sp{f}" for f in (0.9, 1.1) for i in train.ids)]
    assert paths["valid_cuts"] == "data/librispeech/fbank/librispeech_cuts_dev-clean.jsonl.gz"


def make_kaldi_dirs(root: Path) -> list[Path]:
    """Kaldi data dirs train (4 recordings, 2 segments each), dev (2, one read through a pipe) and test (2),
    all audio at 8 kHz."""
    dirs = []
    seed = 0
    for part, num_recordings in (("train", 4), ("dev", 2), ("test", 2)):
        d = root / part
        d.mkdir(parents=True)
        tables: dict[str, list[str]] = {"wav.scp": [], "segments": [], "text": [], "utt2spk": []}
        for r in range(num_recordings):
            rec = f"{part}-rec{r}"
            audio = write_audio(root / "audio" / f"{rec}.wav", 2.4, 8000, seed=seed)
            tables["wav.scp"].append(f"{rec} cat {audio} |" if part == "dev" and r == 0 else f"{rec} {audio}")
            for k, (start, end) in enumerate(((0.0, 1.1), (1.2, 2.4))):
                utt = f"spk{r}-{rec}-{k}"
                tables["segments"].append(f"{utt} {rec} {start} {end}")
                tables["text"].append(f"{utt} {sentence(seed)}")
                tables["utt2spk"].append(f"{utt} spk{r}")
                seed += 1
        for name, lines in tables.items():
            (d / name).write_text("\n".join(lines) + "\n")
        dirs.append(d)
    return dirs


@pytest.mark.slow
def test_kaldi_dirs_at_8khz_to_decoded_teacher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kaldi_dirs = make_kaldi_dirs(tmp_path / "kaldi")
    recipe = make_recipe(tmp_path)
    args = [
        "--corpus", "kaldi", "--kaldi-dirs", " ".join(map(str, kaldi_dirs)), "--vocab-size", VOCAB_SIZE,
        "--lm-config", recipe / "tiny_lm.yaml",
    ]  # fmt: skip
    run_recipe(
        recipe, *args, "--teacher-config", recipe / "tiny_teacher.yaml", "--stop-stage", 5,
        "--decode-methods", "greedy_search", "--teacher-avg", 1,  # the tiny teacher trains one epoch
    )  # fmt: skip

    monkeypatch.chdir(recipe)  # the cuts name their feature archives relative to the recipe directory
    data = recipe / "data" / "kaldi"
    recordings = RecordingSet.from_file(manifest_path(data / "manifests", "kaldi", "recordings", "train"))
    assert len(recordings) == 4
    for part in ("train", "dev", "test"):
        cuts = CutSet.from_file(cuts_path(data / "fbank", "kaldi", part))
        assert len(cuts) == 2 * (4 if part == "train" else 2) and all(texts(cuts))
        for cut in cuts:
            # The 8 kHz audio is resampled when read, so the features are those of 16 kHz audio.
            (resample,) = cut.recording.transforms
            assert (resample.source_sampling_rate, cut.recording.sampling_rate) == (8000, SAMPLING_RATE)
            assert cut.features.sampling_rate == SAMPLING_RATE
            assert (cut.features.num_features, cut.features.frame_shift) == (NUM_MEL_BINS, FRAME_SHIFT)
            assert cut.load_features().shape == (round(cut.duration / FRAME_SHIFT), NUM_MEL_BINS)
    bpe = data / f"lang_bpe_{VOCAB_SIZE}" / "bpe.model"
    assert Tokenizer(bpe).vocab_size == VOCAB_SIZE
    # The teacher's speed-perturbed copies are cut from the resampled audio, so they are at 16 kHz too.
    perturbed = CutSet.from_file(cuts_path(data / "fbank", "kaldi", "train_sp")).to_eager()
    assert len(perturbed) == 3 * 8
    for cut in perturbed.filter(lambda c: "_sp" in c.id):
        assert cut.load_features().shape == (cut.num_frames, NUM_MEL_BINS)
        assert cut.recording.sampling_rate == SAMPLING_RATE
    teacher = recipe / "exp" / "kaldi" / "teacher"
    assert (teacher / "epoch-1.pt").is_file()
    for part in ("dev", "test"):
        assert (teacher / f"wer-{part}-greedy_search.txt").is_file()
        assert (teacher / f"wer-{part}-modified_beam_search_beam_4_lm_0.45_bp_1.txt").is_file()  # LM fusion
    # A corpus without LM text of its own: the LM reads the training transcripts.
    assert "train_cuts" in load_checkpoint(recipe / "exp" / "kaldi" / "lm" / "epoch-1.pt")
    assert (recipe / "exp" / "kaldi" / "results.md").is_file()

    # A finished data stage is skipped when rerun; --force true redoes it, outputs included.
    before = bpe.stat().st_mtime_ns
    out = run_recipe(recipe, *args, "--stage", 3, "--stop-stage", 3)
    assert "stage 3 (bpe_30): already done" in out.stdout and bpe.stat().st_mtime_ns == before
    run_recipe(recipe, *args, "--stage", 3, "--stop-stage", 3, "--force", "true")
    assert bpe.stat().st_mtime_ns != before


LS = ["--corpus", "librispeech"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--corpus", "kaldi", "--kaldi-dirs", "/x/train"], "need a train and a dev part"),
        (["--corpus", "kaldi", "--kaldi-dirs", "/x/train /x/dev /y/dev"], "part name(s) used twice: dev"),
        (["--full-libri", "true"], "need --corpus librispeech"),
        (
            [*LS, "--full-libri", "true", "--librispeech-unlabelled-parts", "train-clean-360"],
            "part name(s) used twice: train-clean-360",
        ),
        (
            [*LS, "--librispeech-unlabelled-parts", "unlabelled train-other-500"],
            "the part name 'unlabelled' is taken",
        ),
    ],
)
def test_inconsistent_parts_fail_before_any_stage(tmp_path: Path, args: list[str], message: str) -> None:
    recipe = make_recipe(tmp_path)
    out = run_recipe(recipe, *args, check=False)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert not (recipe / "data").exists()
