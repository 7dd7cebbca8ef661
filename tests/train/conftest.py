"""A tiny prepared corpus (features + BPE) and a tiny model config for the training-loop tests."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from fake_corpora import make_librispeech_tree  # noqa: E402

TINY_CONFIG = {
    "model": {
        "encoder": {
            "subsampling_channels": 8,
            "num_layers": 2,
            "d_model": 32,
            "num_heads": 2,
            "ffn_dim": 64,
            "conv_kernel": 5,
            "dropout": 0.1,
        },
        "decoder": {"type": "stateless", "dim": 32, "context_size": 2},
        "joiner_dim": 32,
    },
    "data": {"max_duration": 6.0, "num_buckets": 2, "spec_augment": True},
    "optim": {"lr": 0.003, "warmup_batches": 4},
    "loss": {"warm_step": 4},
    "train": {"num_epochs": 2, "log_interval": 1, "save_every_n": 2, "keep_last_k": 2, "num_threads": 1},
}


@dataclass
class TinySetup:
    train_cuts: Path
    valid_cuts: Path
    bpe_model: Path

    def config_file(self, directory: Path, **sections: dict) -> Path:
        """Writes TINY_CONFIG (with ``sections`` merged in) plus these paths to ``directory/train.yaml``."""
        cfg = {k: dict(v) for k, v in TINY_CONFIG.items()}
        for key, values in sections.items():
            cfg.setdefault(key, {}).update(values)
        cfg["paths"] = {
            "train_cuts": str(self.train_cuts),
            "valid_cuts": str(self.valid_cuts),
            "bpe_model": str(self.bpe_model),
        }
        path = directory / "train.yaml"
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg))
        return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinySetup:
    from lhotse import CutSet

    from kd.data.features import compute_fbank
    from kd.data.io import cuts_path
    from kd.data.librispeech import prepare_librispeech_manifests
    from kd.data.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("tiny")
    corpus = make_librispeech_tree(root / "corpus", {"train": 8, "dev": 2})
    prepare_librispeech_manifests(corpus, ["train", "dev"], root / "manifests", "tiny", [])
    compute_fbank(root / "manifests", "tiny", ["train", "dev"], root / "fbank", extractor="lhotse")
    train = cuts_path(root / "fbank", "tiny", "train")
    texts = [s.text for c in CutSet.from_file(train) for s in c.supervisions]
    bpe = train_bpe(texts, vocab_size=30, output_dir=root / "lang")
    return TinySetup(train, cuts_path(root / "fbank", "tiny", "dev"), bpe)
