"""Sharded, resumable generation of a teacher's targets for a CutSet (the layout is in kd.targets.manifest).

The cuts are split into ``num_shards`` contiguous shards. A shard writes its arrays to its own archives,
then its statistics, then its cuts manifest, each atomically; the cuts manifest marks the shard done, so a
killed run redoes only the shards without one (their partial archives are rewritten from scratch). Once
every shard is done the shards' cuts are joined into ``<name>_targets.jsonl.gz`` in input order, and the
manifest gets the run's statistics.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from multiprocessing import get_context
from pathlib import Path

import torch
from lhotse import CutSet, load_manifest_lazy
from lhotse.cut import Cut
from lhotse.dataset import DynamicCutSampler
from lhotse.lazy import LazyIteratorChain
from tqdm.auto import tqdm

from kd.config import to_dict
from kd.data.dataset import AsrDataset, cut_text
from kd.data.io import atomic_path, load_cuts
from kd.data.tokenizer import Tokenizer
from kd.models.subsampling import SUBSAMPLING_FACTOR, subsampled_lengths
from kd.targets.compute import CutTargets, compute_targets, lattice_problem
from kd.targets.config import STORED_FIELDS, TargetConfig
from kd.targets.manifest import (
    GenerationStats,
    LmInfo,
    TargetsManifest,
    TeacherInfo,
    hash_config,
    hash_state_dict,
    load_manifest,
    manifest_path,
    save_manifest,
    shard_dir,
    targets_cuts_path,
    tokenizer_info,
)
from kd.targets.storage import META_FIELD, NumpyArchiveWriter, attach_arrays, is_unlabelled
from kd.targets.validation import TargetsError
from kd.train.restore import TrainedModel, load_trained_model

log = logging.getLogger(__name__)


@dataclass
class TeacherSpec:
    """Where the teacher is: ``exp_dir`` with the average of epochs ``epoch-avg+1 .. epoch`` (None: the
    newest), and optionally another BPE model than its config's."""

    exp_dir: str
    epoch: int | None = None
    avg: int = 1
    bpe_model: str | None = None

    def load(self, device: torch.device | str) -> tuple[TrainedModel, TeacherInfo]:
        trained = load_trained_model(Path(self.exp_dir), self.epoch, self.avg, device, self.bpe_model)
        info = TeacherInfo(
            exp_dir=self.exp_dir,
            epoch=int(trained.checkpoints[-1].stem.split("-")[1]),
            avg=self.avg,
            checkpoints=[str(p) for p in trained.checkpoints],
            config_hash=hash_config(to_dict(trained.config)["model"]),
            weights_hash=hash_state_dict(trained.model.state_dict()),
        )
        return trained, info


@dataclass
class LmSpec:
    """The LM fused shallowly into the teacher's hypothesis search: the LM experiment ``exp_dir`` at
    ``epoch`` (None: the newest), its log-probabilities weighted by ``scale``."""

    exp_dir: str
    scale: float
    epoch: int | None = None

    def load(self, tokenizer: Tokenizer, device: torch.device | str) -> tuple[torch.nn.Module, LmInfo]:
        """The LM, checked against the teacher's ``tokenizer``, and its record for the manifest."""
        # kd.lm reads tokenizer identities from this package, so it is imported once this one is complete.
        from kd.lm import lm_checkpoint, load_lm

        model = load_lm(self.exp_dir, self.epoch, tokenizer, device)
        checkpoint = str(lm_checkpoint(self.exp_dir, self.epoch))
        return model, LmInfo(self.exp_dir, checkpoint, hash_state_dict(model.state_dict()), self.scale)


def default_config(trained: TrainedModel, **settings: object) -> TargetConfig:
    """A TargetConfig whose prune-range settings are the teacher's training ones, unless given (None
    values are ignored)."""
    loss = trained.config.loss
    base = {
        "prune_range": loss.prune_range,
        "lm_scale": loss.lm_scale,
        "am_scale": loss.am_scale,
        "rnnt_type": loss.rnnt_type,
    }
    base.update({k: v for k, v in settings.items() if v is not None})
    return TargetConfig(**base)


def shard_paths(out_dir: Path, name: str, shard: int) -> tuple[Path, Path]:
    """(cuts manifest, statistics) of one shard."""
    base = shard_dir(out_dir, name) / f"shard-{shard:05d}"
    return base.with_name(base.name + ".jsonl.gz"), base.with_name(base.name + ".json")


def shard_done(out_dir: Path, name: str, shard: int) -> bool:
    return all(p.is_file() for p in shard_paths(out_dir, name, shard))


def prepare_run(manifest: TargetsManifest, out_dir: Path, name: str, force: bool = False) -> bool:
    """Records the run's settings in ``out_dir``, or checks them against a previous run's there.

    Returns:
        True when a previous run with the same settings already finished (nothing left to do).

    Raises:
        TargetsError: a previous run with other settings (another teacher, tokenizer, k, ...) wrote there
            and ``force`` is not set.
    """
    path = manifest_path(out_dir, name)
    if path.is_file() and not force:
        old = load_manifest(path)
        if old.settings() != manifest.settings():
            raise TargetsError(_difference(path, old, manifest))
        if old.stats is not None and targets_cuts_path(out_dir, name).is_file():
            return True
    else:
        shutil.rmtree(shard_dir(out_dir, name), ignore_errors=True)
        targets_cuts_path(out_dir, name).unlink(missing_ok=True)
    save_manifest(manifest, path)
    return False


def run_shard(
    trained: TrainedModel,
    manifest: TargetsManifest,
    out_dir: Path,
    name: str,
    shard: int,
    device: torch.device,
    max_duration: float = 200.0,
    position: int = 0,
    lm: torch.nn.Module | None = None,
) -> GenerationStats:
    """Computes and stores the targets of one shard (or reads its statistics when it is already done);
    ``position`` is the line of its progress bar; ``lm`` is the LM that ``manifest.lm`` records (loaded by
    :meth:`LmSpec.load`), None when it records none."""
    cuts_file, stats_file = shard_paths(out_dir, name, shard)
    if shard_done(out_dir, name, shard):
        return GenerationStats(**json.loads(stats_file.read_text()))
    if (lm is None) != (manifest.lm is None):
        raise ValueError(
            f"shard {shard}: the manifest records the LM {_describe_lm(manifest.lm)} but the search got "
            f"{'none' if lm is None else 'one'}; pass the LM that LmSpec.load gave with the manifest's LmInfo"
        )
    config, stats = manifest.config, GenerationStats()
    cuts = list(_shard_cuts(Path(manifest.source_cuts), shard, manifest.num_shards))
    labels = {c.id: None if is_unlabelled(c) else trained.tokenizer.encode([cut_text(c)])[0] for c in cuts}
    usable = [c for c in cuts if not _skip(c, labels[c.id], config, stats)]
    array_types = [t for t in config.types if STORED_FIELDS[t]]
    directory = shard_dir(out_dir, name)
    writers = {t: NumpyArchiveWriter(directory / t / f"shard-{shard:05d}") for t in array_types}
    done: dict[str, Cut] = {}
    with warnings.catch_warnings():
        # a shard's cuts are read eagerly on purpose: they are written back in input order at the end
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        sampler = DynamicCutSampler(CutSet.from_cuts(usable), max_duration=max_duration, shuffle=False)
    dataset = AsrDataset()
    bar = tqdm(total=len(cuts), desc=f"targets shard {shard}", unit="cut", position=position, leave=False)
    try:
        bar.update(len(cuts) - len(usable))
        for batch_cuts in sampler:
            batch = dataset[batch_cuts]
            results = compute_targets(
                trained.model,
                batch["features"].to(device),
                batch["feature_lens"].to(device),
                [labels[c.id] for c in batch["cuts"]],
                config,
                stats,
                lm=lm,
                lm_scale=manifest.lm.scale if manifest.lm is not None else 0.0,
            )
            for cut, targets in zip(batch["cuts"], results):
                hyp_text = trained.tokenizer.decode(targets.hyp.tokens) if targets.hyp else ""
                done[cut.id] = _attach(cut, targets, hyp_text, writers, manifest.teacher.id, stats)
            bar.update(len(results))
    finally:
        bar.close()
        for writer in writers.values():
            writer.close()
    for t, writer in writers.items():
        stats.add_bytes(t, writer.offset)
    stats.num_cuts = len(done)
    stats.audio_seconds = sum(c.duration for c in done.values())
    with atomic_path(stats_file) as tmp:
        tmp.write_text(json.dumps(asdict(stats)))
    with atomic_path(cuts_file) as tmp:
        CutSet.from_cuts(done[c.id] for c in cuts if c.id in done).to_file(tmp)
    return stats


def merge_shards(manifest: TargetsManifest, out_dir: Path, name: str) -> TargetsManifest:
    """Joins the shards' cuts into ``<name>_targets.jsonl.gz`` and records the run's statistics."""
    missing = [s for s in range(manifest.num_shards) if not shard_done(out_dir, name, s)]
    if missing:
        raise TargetsError(
            f"shards {missing} of {out_dir} are not done; rerun the same command to finish them"
        )
    stats = GenerationStats()
    for shard in range(manifest.num_shards):
        _, stats_file = shard_paths(out_dir, name, shard)
        stats = stats.merge(GenerationStats(**json.loads(stats_file.read_text())))
    shards = [load_manifest_lazy(shard_paths(out_dir, name, s)[0]) for s in range(manifest.num_shards)]
    with atomic_path(targets_cuts_path(out_dir, name)) as tmp:
        CutSet(LazyIteratorChain(*shards)).to_file(tmp)
    manifest.stats = stats
    save_manifest(manifest, manifest_path(out_dir, name))
    return manifest


def generate_targets(
    teacher: TeacherSpec,
    cuts_path: Path,
    out_dir: Path,
    name: str,
    config: TargetConfig | None = None,
    num_shards: int = 1,
    num_workers: int = 1,
    device: torch.device | str = "cpu",
    max_duration: float = 200.0,
    force: bool = False,
    trained: tuple[TrainedModel, TeacherInfo] | None = None,
    lm: LmSpec | None = None,
) -> TargetsManifest:
    """Generates (or finishes) the targets of ``cuts_path`` into ``out_dir``.

    Args:
        teacher: the teacher checkpoint(s). cuts_path: cuts with features. out_dir, name: the output (see
            kd.targets.manifest). config: what to compute (default: every type, the teacher's prune
            settings). num_shards: shards of the run; num_workers: processes running them at once (each
            loads the teacher; 1 runs them here). device: the teacher's. max_duration: seconds of audio
            per batch. force: discard a previous run's output in ``out_dir`` first.
        trained: the teacher already loaded by ``teacher.load`` (saves loading it again).
        lm: an LM fused into the teacher's hypothesis search (recorded in the manifest); None: none.

    Returns:
        the manifest, with the run's statistics.
    """
    if num_shards < 1 or num_workers < 1:
        raise ValueError(f"num_shards and num_workers must be >= 1, got {num_shards}, {num_workers}")
    device = torch.device(device)
    loaded, info = trained or teacher.load(device)
    lm_model, lm_info = lm.load(loaded.tokenizer, device) if lm is not None else (None, None)
    manifest = new_manifest(loaded, info, cuts_path, config or default_config(loaded), num_shards, lm_info)
    if prepare_run(manifest, out_dir, name, force):
        log.info("%s: targets already complete", targets_cuts_path(out_dir, name))
        return load_manifest(manifest_path(out_dir, name))
    pending = [s for s in range(num_shards) if not shard_done(out_dir, name, s)]
    log.info("%d of %d shards to do", len(pending), num_shards)
    if num_workers == 1 or len(pending) <= 1:
        for shard in pending:
            run_shard(loaded, manifest, out_dir, name, shard, device, max_duration, lm=lm_model)
    else:
        with ProcessPoolExecutor(min(num_workers, len(pending)), mp_context=get_context("spawn")) as pool:
            jobs = [
                pool.submit(
                    _run_shard_process, teacher, lm, manifest, out_dir, name, s, str(device), max_duration, i
                )
                for i, s in enumerate(pending)
            ]
            for job in jobs:
                job.result()
    manifest = merge_shards(manifest, out_dir, name)
    log.info("targets of %s:\n%s", cuts_path, format_report(manifest.stats))
    return manifest


def generate_targets_of_rank(
    trained: tuple[TrainedModel, TeacherInfo],
    cuts_path: Path,
    out_dir: Path,
    name: str,
    config: TargetConfig,
    rank: int,
    world_size: int,
    barrier: Callable[[], None],
    device: torch.device | str = "cpu",
    max_duration: float = 200.0,
    force: bool = False,
    lm: LmSpec | None = None,
) -> TargetsManifest | None:
    """One rank's part of a run with one shard per rank (torchrun): rank 0 records the settings, every rank
    does its shard, rank 0 joins them. ``barrier`` waits for every rank (torch.distributed.barrier).
    ``lm``: an LM fused into the hypothesis search, loaded by every rank.

    Returns:
        the manifest with the run's statistics on rank 0, None on the others.
    """
    loaded, info = trained
    lm_model, lm_info = lm.load(loaded.tokenizer, device) if lm is not None else (None, None)
    manifest = new_manifest(loaded, info, cuts_path, config, world_size, lm_info)
    if rank == 0:
        prepare_run(manifest, out_dir, name, force)
    barrier()
    if not targets_cuts_path(out_dir, name).is_file():
        run_shard(loaded, manifest, out_dir, name, rank, torch.device(device), max_duration, rank, lm_model)
    barrier()
    if rank != 0:
        return None
    if targets_cuts_path(out_dir, name).is_file():
        return load_manifest(manifest_path(out_dir, name))
    manifest = merge_shards(manifest, out_dir, name)
    log.info("targets of %s:\n%s", cuts_path, format_report(manifest.stats))
    return manifest


def new_manifest(
    trained: TrainedModel,
    info: TeacherInfo,
    cuts_path: Path,
    config: TargetConfig,
    num_shards: int,
    lm: LmInfo | None = None,
) -> TargetsManifest:
    shift = 0.01
    for cut in islice(load_cuts(cuts_path), 1):
        shift = cut.frame_shift or shift
    return TargetsManifest(
        teacher=info,
        tokenizer=tokenizer_info(trained.tokenizer),
        config=config,
        source_cuts=str(cuts_path),
        num_shards=num_shards,
        lm=lm,
        frame_shift=shift * SUBSAMPLING_FACTOR,
        subsampling_factor=SUBSAMPLING_FACTOR,
    )


def format_report(stats: GenerationStats) -> str:
    """A Markdown table of compute seconds and stored MB per hour of audio, per part."""
    rows = ["| part | seconds / h audio | MB / h audio |", "|---|---:|---:|"]
    for part, values in stats.per_hour().items():
        rows.append(f"| {part} | {values['seconds_per_hour']:.1f} | {values['bytes_per_hour'] / 1e6:.2f} |")
    hours = stats.audio_seconds / 3600
    rows.append(f"\n{stats.num_cuts} cuts ({hours:.3f} h) with targets, {len(stats.skipped)} skipped")
    return "\n".join(rows)


def _run_shard_process(
    teacher: TeacherSpec,
    lm: LmSpec | None,
    manifest: TargetsManifest,
    out_dir: Path,
    name: str,
    shard: int,
    device: str,
    max_duration: float,
    position: int,
) -> GenerationStats:
    # the shards share the machine's cores
    torch.set_num_threads(1)
    trained, info = teacher.load(device)
    if info.id != manifest.teacher.id:
        raise TargetsError(
            f"shard {shard} loaded the teacher {info.describe()}, not {manifest.teacher.describe()}: "
            "the checkpoints changed during the run"
        )
    lm_model, lm_info = lm.load(trained.tokenizer, device) if lm is not None else (None, None)
    if lm_info != manifest.lm:
        raise TargetsError(
            f"shard {shard} loaded the LM {_describe_lm(lm_info)}, not {_describe_lm(manifest.lm)}: "
            "the LM checkpoints changed during the run"
        )
    return run_shard(
        trained, manifest, out_dir, name, shard, torch.device(device), max_duration, position, lm_model
    )


def _shard_cuts(cuts_path: Path, shard: int, num_shards: int) -> CutSet:
    """The cuts of one shard: the ``shard``-th of ``num_shards`` contiguous parts of the manifest."""
    cuts = load_cuts(cuts_path)
    ids: set[str] = set()
    for cut in cuts:
        # targets are joined to their cuts by id
        if cut.id in ids:
            raise TargetsError(f"{cuts_path}: cut id {cut.id} occurs twice; cut ids must be unique")
        ids.add(cut.id)
    total = len(ids)
    start, stop = shard * total // num_shards, (shard + 1) * total // num_shards
    return CutSet.from_cuts(islice(cuts, start, stop))


def _skip(cut: Cut, labels: list[int] | None, config: TargetConfig, stats: GenerationStats) -> bool:
    """Whether ``cut`` (with reference ``labels``, None when unlabelled) gets no targets; the reason goes to
    ``stats.skipped``."""
    if not cut.has_features:
        raise TargetsError(
            f"cut {cut.id} has no features; compute them first (`python -m kd.bin.compute_fbank`)"
        )
    frames = int(subsampled_lengths(torch.tensor([cut.num_frames])))
    # an unlabelled cut's labels are its hypothesis: at most one token per frame, always within the lattice
    tokens = len(labels) if labels is not None and config.needs_tokens else 0
    reason = lattice_problem(frames, tokens, config.prune_range, config.rnnt_type)
    if reason is not None:
        stats.skipped[cut.id] = reason
    return reason is not None


def _attach(
    cut: Cut,
    targets: CutTargets,
    hyp_text: str,
    writers: dict[str, NumpyArchiveWriter],
    teacher_id: str,
    stats: GenerationStats,
) -> Cut:
    """``cut`` with its targets stored and attached (``hyp_text``: the hypothesis' words, if one was
    searched); counts the bytes of its JSON records."""
    for target_type, arrays in targets.arrays.items():
        cut = attach_arrays(cut, writers[target_type], target_type, arrays)
    meta = {
        "teacher": teacher_id,
        "frames": targets.frames,
        "tokens": targets.tokens,
        "types": sorted(targets.arrays) + (["hyp"] if targets.hyp else []),
    }
    stats.add_bytes("meta", len(json.dumps(meta)))
    if targets.hyp is not None:
        meta["hyp"] = {"text": hyp_text, "score": targets.hyp.score}
        stats.add_bytes("hyp", len(json.dumps(meta["hyp"])))
    return cut.with_custom(META_FIELD, meta)


def _difference(path: Path, old: TargetsManifest, new: TargetsManifest) -> str:
    """Why a previous run's settings at ``path`` refuse this run, naming both sides."""
    if old.teacher.id != new.teacher.id:
        what = f"the teacher {old.teacher.describe()}; this run's is {new.teacher.describe()}"
    elif old.tokenizer.sha256 != new.tokenizer.sha256:
        what = f"the tokenizer {old.tokenizer.describe()}; this run's is {new.tokenizer.describe()}"
    elif old.lm != new.lm:
        what = f"the LM {_describe_lm(old.lm)}; this run's is {_describe_lm(new.lm)}"
    else:
        a, b = old.settings(), new.settings()
        changed = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
        what = "other settings: " + "; ".join(f"{k} {x} there, {y} now" for k, (x, y) in changed.items())
    return f"{path} records targets made with {what}. Use another --out-dir, or --force to discard them"


def _describe_lm(lm: LmInfo | None) -> str:
    return "none" if lm is None else lm.describe()
