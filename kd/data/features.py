"""80-dim log-mel filterbank features, computed once and stored with lhotse.

A part's cuts are made from its recordings and supervisions, trimmed to one cut per supervision, resampled
to 16 kHz where needed, and their features written by ``LilcomChunkyWriter`` under
``<fbank-dir>/<prefix>_feats_<part>/``; the CutSet goes to ``<fbank-dir>/<prefix>_cuts_<part>.jsonl.gz``,
written last and atomically, so its presence means the part is complete.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import shutil
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import torch
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter
from lhotse.cut import Cut
from lhotse.features.base import FeatureExtractor
from tqdm.auto import tqdm

from kd.data.errors import AudioError
from kd.data.io import atomic_path, cuts_path, feats_dir, load_manifests

log = logging.getLogger(__name__)

SAMPLING_RATE = 16000
NUM_MEL_BINS = 80
FRAME_SHIFT = 0.01
CHUNKS_PER_JOB = 8  # chunks per worker: enough for a smooth progress bar, few enough archive files

ExtractorKind = Literal["auto", "lhotse", "kaldifeat"]


def make_fbank_extractor(kind: ExtractorKind = "auto", device: str = "cpu") -> FeatureExtractor:
    """lhotse's 80-bin Fbank, or kaldifeat's with the same settings (``auto``: kaldifeat when importable)."""
    if kind == "auto":
        kind = "kaldifeat" if importlib.util.find_spec("kaldifeat") is not None else "lhotse"
    if kind == "kaldifeat":
        from lhotse.features.kaldifeat import KaldifeatFbank, KaldifeatFbankConfig, KaldifeatMelOptions

        return KaldifeatFbank(
            KaldifeatFbankConfig(mel_opts=KaldifeatMelOptions(num_bins=NUM_MEL_BINS), device=device)
        )
    return Fbank(FbankConfig(num_filters=NUM_MEL_BINS, device=device))


def cuts_from_manifests(manifest_dir: str | Path, prefix: str, part: str) -> CutSet:
    """One cut per supervision of a part, at 16 kHz (no features yet)."""
    recordings, supervisions = load_manifests(manifest_dir, prefix, part)
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    cuts = cuts.trim_to_supervisions(keep_overlapping=False)
    return CutSet.from_cuts(
        c if c.sampling_rate == SAMPLING_RATE else c.resample(SAMPLING_RATE) for c in cuts
    )


def _extract(cuts: CutSet, extractor: FeatureExtractor, storage_path: Path) -> CutSet:
    return cuts.compute_and_store_features(
        extractor=extractor, storage_path=storage_path, storage_type=LilcomChunkyWriter, progress_bar=False
    )


def feature_pool(num_jobs: int) -> contextlib.AbstractContextManager[Executor | None]:
    """Worker processes for :func:`extract_features` (``None``, i.e. in-process, when ``num_jobs <= 1``)."""
    if num_jobs <= 1:
        return contextlib.nullcontext()
    # One torch thread per worker: multi-threaded workers oversubscribe the cores and can hang.
    return ProcessPoolExecutor(
        num_jobs, mp_context=get_context("spawn"), initializer=torch.set_num_threads, initargs=(1,)
    )


def extract_features(
    cuts: CutSet,
    extractor: FeatureExtractor,
    storage_dir: Path,
    executor: Executor | None = None,
    num_chunks: int = CHUNKS_PER_JOB,
    desc: str = "fbank",
) -> CutSet:
    """Computes and stores features of ``cuts``, keeping their order.

    The cuts are split into ``num_chunks`` chunks, each stored in its own archive ``feats-<i>.lca`` and run
    on ``executor`` (in this process when it is None).

    Cuts whose audio cannot be read are dropped, counted and logged.

    Raises:
        AudioError: when no cut's audio can be read.
    """
    cut_list = list(cuts)
    chunk_size = math.ceil(len(cut_list) / max(1, min(len(cut_list), num_chunks)))
    chunks = [CutSet.from_cuts(cut_list[i : i + chunk_size]) for i in range(0, len(cut_list), chunk_size)]
    storage_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, CutSet] = {}
    with tqdm(total=len(cut_list), desc=desc, unit="cut") as bar:
        if executor is None:
            for i, chunk in enumerate(chunks):
                results[i] = _extract(chunk, extractor, storage_dir / f"feats-{i}")
                bar.update(len(chunk))
        else:
            futures = {
                executor.submit(_extract, chunk, extractor, storage_dir / f"feats-{i}"): i
                for i, chunk in enumerate(chunks)
            }
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(len(chunks[futures[future]]))
    out = CutSet.from_cuts(c for i in range(len(chunks)) for c in results[i])
    if len(out) < len(cut_list):
        kept = set(out.ids)
        dropped = [c for c in cut_list if c.id not in kept]
        if not out:
            raise AudioError(
                f"no audio could be read for any of the {len(cut_list)} cuts, e.g. {_audio_of(dropped[0])}"
            )
        log.warning(
            "%d of %d cuts skipped because their audio could not be read, e.g. %s",
            len(dropped),
            len(cut_list),
            "; ".join(f"{c.id} ({_audio_of(c)})" for c in dropped[:5]),
        )
    return out


def _audio_of(cut: Cut) -> str:
    return ", ".join(str(s.source) for s in cut.recording.sources) if cut.has_recording else cut.id


def compute_fbank(
    manifest_dir: str | Path,
    prefix: str,
    parts: list[str],
    output_dir: str | Path,
    num_jobs: int = 1,
    extractor: ExtractorKind = "auto",
    force: bool = False,
) -> list[Path]:
    """Writes ``<output_dir>/<prefix>_cuts_<part>.jsonl.gz`` with stored features for each part.

    Parts whose cuts file exists are skipped unless ``force`` (the stage is resumable).
    Returns the cuts paths of all ``parts``.
    """
    fbank = make_fbank_extractor(extractor)
    paths = [cuts_path(output_dir, prefix, part) for part in parts]
    todo = []
    for part, out in zip(parts, paths):
        if out.is_file() and not force:
            log.info("%s exists, skipping part %s", out, part)
        else:
            todo.append((part, out))
    if not todo:
        return paths
    with feature_pool(num_jobs) as executor:
        for part, out in todo:
            cuts = cuts_from_manifests(manifest_dir, prefix, part)
            storage = feats_dir(output_dir, prefix, part)
            # Without the cuts file the archives are from an interrupted run: nothing refers to them.
            shutil.rmtree(storage, ignore_errors=True)
            with_feats = extract_features(
                cuts,
                fbank,
                storage,
                executor,
                max(1, num_jobs) * CHUNKS_PER_JOB,
                desc=f"fbank {prefix} {part}",
            )
            with atomic_path(out) as tmp:
                with_feats.to_file(tmp)
            hours = sum(c.duration for c in with_feats) / 3600
            log.info("%s: %d cuts, %.2f h", out, len(with_feats), hours)
    return paths
