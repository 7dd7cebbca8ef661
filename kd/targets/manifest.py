"""The targets manifest: which teacher and tokenizer made a set of targets, with which settings, at what cost.

Layout of a generation run with ``--out-dir D`` for cuts named ``N``:

    D/N_targets.jsonl.gz            the cuts with their targets attached (written once every shard is done)
    D/N_targets.json                this manifest (settings first; statistics added at the end)
    D/N_targets/shard-00000.jsonl.gz  one shard's cuts; its presence marks the shard done
    D/N_targets/shard-00000.json      that shard's statistics
    D/N_targets/<type>/shard-00000.kda  the shard's arrays of one target type
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kd.config import ConfigError, from_dict
from kd.data.io import atomic_path
from kd.data.tokenizer import Tokenizer
from kd.targets.config import TargetConfig
from kd.targets.validation import TargetsError

FORMAT_VERSION = 1


@dataclass
class TeacherInfo:
    """The teacher a set of targets comes from.

    Attributes:
        exp_dir: its experiment directory. epoch, avg: the averaged epochs ``epoch-avg+1 .. epoch``.
        checkpoints: the averaged checkpoint files.
        config_hash: sha256 of its model config (canonical JSON).
        weights_hash: sha256 of its (averaged) weights.
    """

    exp_dir: str
    epoch: int
    avg: int
    checkpoints: list[str]
    config_hash: str
    weights_hash: str

    @property
    def id(self) -> str:
        """A short id of the teacher's config and weights, stored with every cut's targets."""
        return hashlib.sha256(f"{self.config_hash}:{self.weights_hash}".encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.exp_dir} (epoch {self.epoch}, avg {self.avg}, id {self.id})"


@dataclass
class LmInfo:
    """The LM fused shallowly into the teacher's beam search, which shapes its hypotheses (the ``hyp``
    targets and the labels of unlabelled cuts); targets made without one record none.

    Attributes:
        exp_dir: its experiment directory. checkpoint: the checkpoint file used.
        weights_hash: sha256 of its weights.
        scale: the weight of its log-probabilities in the search.
    """

    exp_dir: str
    checkpoint: str
    weights_hash: str
    scale: float

    def describe(self) -> str:
        return f"{self.checkpoint} (scale {self.scale:g}, weights {self.weights_hash[:12]})"


@dataclass
class TokenizerInfo:
    """The BPE model the targets' token ids refer to: its path, sha256 and vocabulary size."""

    path: str
    sha256: str
    vocab_size: int

    def describe(self) -> str:
        return f"{self.path} (sha256 {self.sha256[:12]}, vocabulary {self.vocab_size})"


@dataclass
class GenerationStats:
    """What a run (or one shard) produced and what it cost.

    Attributes:
        num_cuts: cuts that got targets. audio_seconds: their audio.
        skipped: cut id -> why it got no targets.
        seconds: compute time by part: ``encoder`` (shared by all types), ``search`` (hypotheses: the ``hyp``
            type, and the labels of unlabelled cuts), and each target type's own work.
        bytes: stored bytes per target type (array archives; JSON text for ``hyp``), and ``meta`` for the
            per-cut records.
    """

    num_cuts: int = 0
    audio_seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)

    def add_time(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def add_bytes(self, part: str, nbytes: int) -> None:
        self.bytes[part] = self.bytes.get(part, 0) + nbytes

    def merge(self, other: GenerationStats) -> GenerationStats:
        out = GenerationStats(
            self.num_cuts + other.num_cuts, self.audio_seconds + other.audio_seconds, {**self.skipped}
        )
        out.skipped.update(other.skipped)
        for stats in (self, other):
            for part, s in stats.seconds.items():
                out.add_time(part, s)
            for part, n in stats.bytes.items():
                out.add_bytes(part, n)
        return out

    def per_hour(self) -> dict[str, dict[str, float]]:
        """``{part: {"seconds_per_hour": .., "bytes_per_hour": ..}}`` per hour of audio with targets."""
        hours = self.audio_seconds / 3600
        if hours <= 0:
            return {}
        parts = list(dict.fromkeys([*self.seconds, *self.bytes]))
        return {
            p: {
                "seconds_per_hour": self.seconds.get(p, 0.0) / hours,
                "bytes_per_hour": self.bytes.get(p, 0) / hours,
            }
            for p in parts
        }


@dataclass
class TargetsManifest:
    """Everything a student needs to trust a set of targets.

    Attributes:
        teacher, tokenizer: where the targets come from.
        config: the generation settings (types, k, s_range, ...).
        source_cuts: the cuts manifest the targets were made for.
        num_shards: shards of the run.
        lm: the LM fused into the hypothesis search, None without one. It is a setting of the run, so a run
            with another LM (or none) cannot write into the same directory; the targets still come from
            the same teacher, so a student may mix them with that teacher's targets made without an LM.
        frame_shift: seconds per teacher encoder frame (feature shift x subsampling).
        subsampling_factor: the encoder's; the student must share it.
        format_version: of this layout.
        stats: the run's :class:`GenerationStats`, once every shard is done.
    """

    teacher: TeacherInfo
    tokenizer: TokenizerInfo
    config: TargetConfig
    source_cuts: str
    num_shards: int
    lm: LmInfo | None = None
    frame_shift: float = 0.04
    subsampling_factor: int = 4
    format_version: int = FORMAT_VERSION
    stats: GenerationStats | None = None

    def settings(self) -> dict[str, Any]:
        """The manifest without its statistics: what two runs must share to write into one directory."""
        out = asdict(self)
        out.pop("stats")
        return out


def manifest_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / f"{name}_targets.json"


def targets_cuts_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / f"{name}_targets.jsonl.gz"


def shard_dir(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / f"{name}_targets"


def manifest_for_cuts(cuts_path: str | Path) -> Path:
    """``D/N_targets.jsonl.gz`` -> ``D/N_targets.json``, the manifest of a targets cuts file."""
    path = Path(cuts_path)
    if not path.name.endswith("_targets.jsonl.gz"):
        raise TargetsError(f"{path} is not a targets cuts file (<name>_targets.jsonl.gz)")
    return path.with_name(path.name[: -len(".jsonl.gz")] + ".json")


def save_manifest(manifest: TargetsManifest, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(asdict(manifest), indent=2) + "\n")


def load_manifest(path: str | Path) -> TargetsManifest:
    """Reads a targets manifest.

    Raises:
        TargetsError: the file is missing or is not a targets manifest of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise TargetsError(f"{path}: targets manifest not found; run `python -m kd.bin.generate_targets`")
    try:
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise TargetsError(
                f"{path}: targets format {data.get('format_version')}, this code reads {FORMAT_VERSION}; "
                "regenerate the targets"
            )
        return from_dict(TargetsManifest, data, where=str(path))
    except (json.JSONDecodeError, ConfigError) as e:
        raise TargetsError(f"{path}: not a targets manifest ({e})") from e


def hash_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_state_dict(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict's tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def hash_config(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def tokenizer_info(tokenizer: Tokenizer) -> TokenizerInfo:
    return TokenizerInfo(str(tokenizer.model_path), hash_file(tokenizer.model_path), tokenizer.vocab_size)
