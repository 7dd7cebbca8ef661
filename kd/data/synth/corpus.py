"""The parallel, resumable driver that writes the synthetic corpus in LibriSpeech's layout.

``<root>/<split>/<spk>/<chap>/<spk>-<chap>-<utt>.flac`` with ``<spk>-<chap>.trans.txt`` beside them for
train/dev/test; the ``unlabelled`` split's transcripts go to ``<root>/unlabelled-transcripts/`` instead, so
that ``lhotse.recipes.prepare_librispeech`` sees no text for it but pseudo-labels can still be scored.
``<root>/lm-text.txt.gz`` holds the LM's training text (:func:`kd.data.synth.plan.lm_sentences`): the
sentences within the corpus' vocabulary but for those dev, test and unlabelled read, one transcript per line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from kd.data.synth.effects import SAMPLE_RATE, draw_perturbation, finish, run_sox, utterance_rng
from kd.data.synth.engines import SynthesisError, TTSRequest, engine_versions, synthesize
from kd.data.synth.plan import (
    SPLITS,
    TRAIN,
    UNLABELLED,
    CorpusPlan,
    CorpusSize,
    Utterance,
    lm_sentences,
    make_plan,
    oov_rate,
)
from kd.data.synth.text import read_sentences, restrict_vocabulary
from kd.data.synth.voices import available_voices

log = logging.getLogger(__name__)

CHUNK = 12  # utterances of one chapter per task: festival starts once per task
CONFIG_FILE = ".synth-config.json"
LM_TEXT = "lm-text.txt.gz"
DEFAULT_SENTENCES = Path(__file__).resolve().parents[3] / "local" / "data" / "sentences.txt.gz"


@dataclass(frozen=True)
class BuildResult:
    root: Path
    seconds: dict[str, float]  # audio seconds per split
    utterances: dict[str, int]
    failed: list[str]  # utterance ids that could not be made (rerun to retry)
    wall_seconds: float


def flac_seconds(path: Path) -> float | None:
    """Duration of a finished utterance, or None if ``path`` is not a 16 kHz mono FLAC whose last sample
    decodes (a truncated file still has a valid header)."""
    try:
        with sf.SoundFile(str(path)) as f:
            if f.format != "FLAC" or f.samplerate != SAMPLE_RATE or f.channels != 1 or f.frames == 0:
                return None
            f.seek(f.frames - 1)
            return f.frames / SAMPLE_RATE if len(f.read(1)) == 1 else None
    except (RuntimeError, sf.LibsndfileError):
        return None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    # Not kd.data.io.atomic_path, whose temporary name keeps the suffix: a kill would leave a hidden
    # ``*.trans.txt`` in the tree that lhotse's LibriSpeech recipe then reads as a transcript file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode())


def _make_chunk(args: tuple[Path, int, list[Utterance]]) -> list[tuple[str, float | None, str]]:
    """Synthesise and post-process one chunk; returns (utterance id, seconds or None, error) per utterance."""
    root, seed, utts = args
    results: list[tuple[str, float | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        work = Path(tmp)
        todo, perturb = [], {}
        for u in utts:
            rng = utterance_rng(seed, u.index)
            p = draw_perturbation(rng, u.speaker.rate, u.speaker.pitch_cents)
            perturb[u.index] = (p, rng)
            todo.append(
                TTSRequest(
                    u.speaker.voice.engine, u.speaker.voice.name, u.text, p.rate, work / f"{u.index}.wav"
                )
            )
        try:
            synthesize(todo, work)
        except SynthesisError as e:
            # One bad request should not sink its chunk-mates: retry them one by one.
            log.debug("chunk failed (%s), retrying utterance by utterance", e)
            for req in todo:
                try:
                    synthesize([req], work)
                except SynthesisError as e1:
                    req.out_wav.unlink(missing_ok=True)
                    log.warning("%s", e1)
        for u, req in zip(utts, todo):
            if not req.out_wav.is_file():
                results.append((u.id, None, f"{req.engine} {req.voice} failed"))
                continue
            p, rng = perturb[u.index]
            try:
                audio = finish(run_sox(req.out_wav, p), p, rng)
            except (RuntimeError, OSError) as e:
                results.append((u.id, None, str(e)))
                continue
            out = root / u.relpath()
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp_out = out.with_name(f".{out.name}.tmp")
            sf.write(str(tmp_out), audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            os.replace(tmp_out, out)
            results.append((u.id, len(audio) / SAMPLE_RATE, ""))
    return results


def _chunks(utts: Sequence[Utterance]) -> list[list[Utterance]]:
    by_chapter: dict[tuple[int, int], list[Utterance]] = defaultdict(list)
    for u in utts:
        by_chapter[(u.speaker.id, u.chapter)].append(u)
    return [group[i : i + CHUNK] for group in by_chapter.values() for i in range(0, len(group), CHUNK)]


def _check_config(root: Path, config: dict) -> None:
    """Refuse to resume into a corpus built with other settings (its files would not match the plan)."""
    path = root / CONFIG_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise ValueError(
                f"{root} holds a corpus built with other settings ({', '.join(diff)} differ): "
                "use another --out, or delete it to rebuild"
            )
    else:
        _atomic_write_text(path, json.dumps(config, indent=1, sort_keys=True) + "\n")


def _write_transcripts(root: Path, plan: CorpusPlan, done: set[str]) -> None:
    for (spk, chap), utts in plan.chapters.items():
        split = utts[0].split
        lines = "".join(f"{u.id} {u.transcript}\n" for u in utts if u.id in done)
        if split == UNLABELLED:
            path = root / "unlabelled-transcripts" / f"{spk}-{chap}.trans.txt"
        else:
            path = root / split / str(spk) / str(chap) / f"{spk}-{chap}.trans.txt"
        if lines:
            _atomic_write_text(path, lines)


def _write_lm_text(path: Path, sentences: Sequence[str]) -> None:
    """One sentence per line, gzipped with no timestamp so that a rebuild writes the same bytes."""
    _atomic_write_bytes(path, gzip.compress(("\n".join(sentences) + "\n").encode(), mtime=0))


def _write_speakers(root: Path, plan: CorpusPlan, seconds_by_speaker: dict[int, float]) -> None:
    lines = [
        "; Synthetic speakers: one TTS voice with a fixed rate and pitch shift each.",
        "; Splits are disjoint by FAMILY (the underlying recorded speaker or formant set); unlabelled",
        "; speakers are new speakers from train families.",
        ";ID  |SEX| SUBSET     |MINUTES| ENGINE    | VOICE                       "
        "| FAMILY        | RATE | PITCH",
    ]
    for s in plan.speakers:
        minutes = seconds_by_speaker.get(s.id, 0.0) / 60
        lines.append(
            f"{s.id:<5}| {s.voice.gender} | {s.split:<11}| {minutes:5.2f} | {s.voice.engine:<10}| "
            f"{s.voice.name:<28}| {s.voice.family:<14}| {s.rate:.3f}| {s.pitch_cents:+.1f}"
        )
    _atomic_write_text(root / "SPEAKERS.txt", "\n".join(lines) + "\n")


def build_corpus(
    root: Path,
    size: CorpusSize,
    seed: int,
    nj: int = 1,
    sentences_path: Path | None = None,
    size_name: str = "custom",
    command: str = "",
    progress: bool = True,
) -> BuildResult:
    """Build (or finish building) the corpus under ``root``; see the module docstring for the layout.

    Utterances whose flac is already complete are kept; the transcripts, SPEAKERS.txt and corpus.json are
    rewritten at the end from what exists. Raises NoVoicesError when no TTS engine is installed.
    """
    start = time.time()
    root = Path(root)
    voices = available_voices()
    sentences_path = Path(sentences_path or DEFAULT_SENTENCES)
    sentences = read_sentences(sentences_path)
    within_vocab = restrict_vocabulary(sentences, size.max_vocab)
    plan = make_plan(within_vocab, voices, size, seed)
    root.mkdir(parents=True, exist_ok=True)
    _check_config(
        root,
        {
            "seed": seed,
            "size": asdict(size),
            "sentences_sha1": hashlib.sha1(sentences_path.read_bytes()).hexdigest(),
            "voices": [f"{v.engine}:{v.name}" for v in voices],
        },
    )

    seconds: dict[str, float] = {}
    todo = []
    for u in plan.utterances:
        secs = flac_seconds(root / u.relpath())
        if secs is None:
            todo.append(u)
        else:
            seconds[u.id] = secs
    log.info(
        "%d utterances planned, %d already made, %d to make with %d jobs",
        len(plan.utterances),
        len(seconds),
        len(todo),
        nj,
    )
    failed: dict[str, str] = {}
    tasks = [(root, seed, chunk) for chunk in _chunks(todo)]
    with tqdm(total=len(todo), desc="synth", unit="utt", disable=not progress or not todo) as bar:
        if nj <= 1:
            _collect(map(_make_chunk, tasks), seconds, failed, bar)
        else:
            with multiprocessing.get_context("fork").Pool(nj) as workers:
                _collect(workers.imap_unordered(_make_chunk, tasks), seconds, failed, bar)
    for uid, err in sorted(failed.items()):
        log.warning("failed %s: %s", uid, err)

    _write_transcripts(root, plan, set(seconds))
    by_speaker: dict[int, float] = defaultdict(float)
    split_seconds: dict[str, float] = defaultdict(float)
    split_utts: Counter[str] = Counter()
    for u in plan.utterances:
        if u.id in seconds:
            by_speaker[u.speaker.id] += seconds[u.id]
            split_seconds[u.split] += seconds[u.id]
            split_utts[u.split] += 1
    _write_speakers(root, plan, by_speaker)
    # The LM reads the corpus' own kind of text: sentences within its vocabulary.
    lm_text = lm_sentences(within_vocab, plan)
    _write_lm_text(root / LM_TEXT, lm_text)
    wall = time.time() - start
    summary = {
        "seed": seed,
        "size": size_name,
        "size_params": asdict(size),
        "command": command,
        "hours": {s: round(split_seconds[s] / 3600, 4) for s in SPLITS},
        "utterances": {s: split_utts[s] for s in SPLITS},
        "speakers": {s: sum(sp.split == s for sp in plan.speakers) for s in SPLITS},
        "voices": len({sp.voice for sp in plan.speakers}),
        "families": {s: sorted({sp.voice.family for sp in plan.speakers if sp.split == s}) for s in SPLITS},
        "voices_available": len(voices),
        "families_available": len({v.family for v in voices}),
        "sentences": {
            "list": len(sentences),
            "within_vocab": plan.sentences_available,
            "used": plan.sentences_used,
            "lm_text": len(lm_text),
        },
        "oov_rate_vs_train": {s: round(oov_rate(plan, s), 4) for s in SPLITS if s != TRAIN},
        "failed": sorted(failed),
        "engines": engine_versions(),
        "wall_seconds": round(wall, 1),
    }
    _atomic_write_text(root / "corpus.json", json.dumps(summary, indent=1) + "\n")
    return BuildResult(root, dict(split_seconds), dict(split_utts), sorted(failed), wall)


def _collect(
    results: Iterable[list[tuple[str, float | None, str]]],
    seconds: dict[str, float],
    failed: dict[str, str],
    bar: tqdm,
) -> None:
    for chunk in results:
        for uid, secs, err in chunk:
            if secs is None:
                failed[uid] = err
            else:
                seconds[uid] = secs
        bar.update(len(chunk))
