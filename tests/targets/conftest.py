"""A tiny corpus (labelled and unlabelled cuts with fbank, a BPE model) and randomly initialised tiny teachers
saved as the trainer saves them, for the target tests."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from fake_corpora import make_librispeech_tree  # noqa: E402
from tiny_transducer import TINY_MODEL  # noqa: E402

from kd.targets.compute import CutTargets  # noqa: E402
from kd.targets.manifest import TargetsManifest  # noqa: E402


@dataclass
class Corpus:
    cuts: Path  # labelled and unlabelled cuts with features
    labelled: Path  # the labelled ones only
    bpe_model: Path
    other_bpe_model: Path  # another tokenizer of the same size, for the rejection tests


def tiny_teacher(vocab_size: int, seed: int) -> torch.nn.Module:
    """A randomly initialised :data:`TINY_MODEL` transducer in eval mode."""
    from kd.config import from_dict
    from kd.models import build_model
    from kd.models.config import ModelConfig

    torch.manual_seed(seed)
    return build_model(from_dict(ModelConfig, TINY_MODEL), vocab_size).eval()


def save_teacher(exp_dir: Path, bpe_model: Path, seed: int, epoch: int = 1) -> Path:
    """A randomly initialised tiny transducer as ``exp_dir/{config.yaml, epoch-<epoch>.pt}``: a finished
    training of ``epoch`` epochs."""
    from kd.config import from_dict, save_yaml
    from kd.data.tokenizer import Tokenizer
    from kd.train.checkpoint import save_checkpoint
    from kd.train.config import TrainConfig

    config = from_dict(
        TrainConfig,
        {"model": TINY_MODEL, "paths": {"bpe_model": str(bpe_model)}, "train": {"num_epochs": epoch}},
    )
    model = tiny_teacher(Tokenizer(bpe_model).vocab_size, seed)
    save_yaml(config, exp_dir / "config.yaml")
    save_checkpoint(exp_dir / f"epoch-{epoch}.pt", {"model": model.state_dict(), "global_step": epoch})
    return exp_dir


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    from lhotse import CutSet

    from kd.data.features import compute_fbank
    from kd.data.io import cuts_path
    from kd.data.librispeech import prepare_librispeech_manifests
    from kd.data.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("targets_corpus")
    tree = make_librispeech_tree(root / "corpus", {"train": 2}, unlabelled={"unlabelled": 1})
    prepare_librispeech_manifests(tree, ["train"], root / "manifests", "tiny", ["unlabelled"])
    compute_fbank(root / "manifests", "tiny", ["train", "unlabelled"], root / "fbank", extractor="lhotse")
    # at most 0.8 s (19 encoder frames) keeps the random teachers' beam searches short
    labelled = CutSet.from_file(cuts_path(root / "fbank", "tiny", "train")).truncate(
        0.8, "start", preserve_id=True
    )
    unlabelled = CutSet.from_file(cuts_path(root / "fbank", "tiny", "unlabelled"))
    labelled_path = cuts_path(root / "fbank", "tiny", "labelled")
    labelled.to_file(labelled_path)
    mixed = cuts_path(root / "fbank", "tiny", "mixed")
    (labelled + unlabelled.truncate(0.8, "start", preserve_id=True)).to_file(mixed)
    texts = [s.text for c in labelled for s in c.supervisions]
    bpe = train_bpe(texts, vocab_size=30, output_dir=root / "lang")
    other = train_bpe(texts[::-1] + ["ZEBRA QUIZ"], vocab_size=30, output_dir=root / "lang_other")
    return Corpus(mixed, labelled_path, bpe, other)


@pytest.fixture(scope="session")
def teacher_dir(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_teacher(tmp_path_factory.mktemp("teacher"), corpus.bpe_model, seed=1)


@pytest.fixture(scope="session")
def other_teacher_dir(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_teacher(tmp_path_factory.mktemp("other_teacher"), corpus.bpe_model, seed=2)


@dataclass
class Generated:
    out_dir: Path
    manifest: TargetsManifest
    computed: dict[str, CutTargets]  # what the generator computed per cut id, before storage
    max_duration: float = 0.1  # batches of one cut: the teacher's B = 1 forward then gives the same numbers


@pytest.fixture(scope="session")
def generated(corpus: Corpus, teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """Every target type of the mixed cuts, generated once in two shards (in this process)."""
    from kd.targets import TargetConfig, TeacherSpec, generate
    from kd.targets.generate import generate_targets

    out = tmp_path_factory.mktemp("targets")
    computed = {}
    attach = generate._attach

    def recording_attach(cut, targets, *args, **kwargs):
        computed[cut.id] = targets
        return attach(cut, targets, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceeded the max_duration.*")
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        patch.setattr(generate, "_attach", recording_attach)
        manifest = generate_targets(
            TeacherSpec(str(teacher_dir)),
            corpus.cuts,
            out,
            "mixed",
            TargetConfig(topk=4, prune_range=3, lm_scale=0.25, am_scale=0.0, beam=2),
            num_shards=2,
            max_duration=Generated.max_duration,
        )
    return Generated(out, manifest, computed)


@pytest.fixture
def teacher_model() -> torch.nn.Module:
    """A random tiny teacher over 12 classes (blank = 0), built in memory."""
    return tiny_teacher(vocab_size=12, seed=0)
