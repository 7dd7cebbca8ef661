"""Generation runs: resumption after a killed shard, skipped cuts, one shard per rank, the command line, and
the refusal of targets that do not match the student, the teacher or the cut."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

from kd.data.tokenizer import Tokenizer
from kd.targets import TargetConfig, TargetLoader, TargetsError, TeacherSpec, generate
from kd.targets.config import STORED_FIELDS
from kd.targets.generate import generate_targets, generate_targets_of_rank, shard_done, shard_paths
from kd.targets.manifest import load_manifest, manifest_path, shard_dir, targets_cuts_path
from kd.targets.storage import load_arrays

ROOT = Path(__file__).resolve().parents[2]


class KilledError(RuntimeError):
    pass


def _stored(path: Path) -> dict[str, tuple]:
    """Per cut id: its target record and the bytes of every stored array."""
    out = {}
    for cut in CutSet.from_file(path):
        arrays = {t: load_arrays(cut, t) for t in cut.kd_targets["types"] if STORED_FIELDS[t]}
        out[cut.id] = (cut.kd_targets, {(t, k): a.tobytes() for t, d in arrays.items() for k, a in d.items()})
    return out


def _generate(generated, corpus, teacher_dir, out_dir, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceeded the max_duration.*")
        return generate_targets(
            TeacherSpec(str(teacher_dir)),
            corpus.cuts,
            out_dir,
            "mixed",
            generated.manifest.config,
            num_shards=2,
            max_duration=generated.max_duration,
            **kwargs,
        )


def test_a_killed_shard_is_redone_and_only_it(generated, corpus, teacher_dir, tmp_path, monkeypatch):
    attach, calls = generate._attach, []

    def dies_in_shard_1(cut, *args, **kwargs):
        calls.append(cut.id)
        if len(calls) == 5:  # the second cut of shard 1: its first is already in the archives
            raise KilledError
        return attach(cut, *args, **kwargs)

    monkeypatch.setattr(generate, "_attach", dies_in_shard_1)
    with pytest.raises(KilledError):
        _generate(generated, corpus, teacher_dir, tmp_path)
    assert shard_done(tmp_path, "mixed", 0) and not shard_done(tmp_path, "mixed", 1)
    assert (shard_dir(tmp_path, "mixed") / "pruned" / "shard-00001.kda").stat().st_size > 0
    assert not targets_cuts_path(tmp_path, "mixed").exists()
    shard0 = {p: p.stat().st_mtime_ns for p in shard_dir(tmp_path, "mixed").rglob("shard-00000*")}

    compute, batches = generate.compute_targets, []

    def counting(*args, **kwargs):
        batches.append(args[3])
        return compute(*args, **kwargs)

    monkeypatch.setattr(generate, "_attach", attach)
    monkeypatch.setattr(generate, "compute_targets", counting)
    manifest = _generate(generated, corpus, teacher_dir, tmp_path)
    assert len(batches) == 3  # shard 1's three one-cut batches, nothing of shard 0
    assert {p: p.stat().st_mtime_ns for p in shard0} == shard0
    assert manifest.stats.num_cuts == 6 and manifest.settings() == generated.manifest.settings()
    resumed = _stored(targets_cuts_path(tmp_path, "mixed"))
    assert resumed == _stored(targets_cuts_path(generated.out_dir, "mixed"))

    monkeypatch.setattr(generate, "compute_targets", None)  # a finished run computes nothing
    assert _generate(generated, corpus, teacher_dir, tmp_path).stats == manifest.stats


def test_cuts_without_a_lattice_are_skipped_and_counted(corpus, teacher_dir, tmp_path):
    cuts = list(CutSet.from_file(corpus.labelled))
    short = cuts[0].truncate(duration=0.05)  # 5 feature frames: no encoder frame
    chatty = cuts[1].with_custom("note", "long")
    chatty.supervisions[0] = chatty.supervisions[0].transform_text(lambda text: " ".join([text] * 8))
    path = tmp_path / "odd_cuts.jsonl.gz"
    CutSet.from_cuts([short, chatty, *cuts[2:]]).to_file(path)
    config = TargetConfig(types=["pruned"], topk=2, prune_range=3)
    manifest = generate_targets(TeacherSpec(str(teacher_dir)), path, tmp_path / "out", "odd", config)
    assert set(manifest.stats.skipped) == {short.id, chatty.id}
    assert "no encoder frame" in manifest.stats.skipped[short.id]
    assert "at most 2 per frame" in manifest.stats.skipped[chatty.id]
    written = CutSet.from_file(targets_cuts_path(tmp_path / "out", "odd"))
    assert [c.id for c in written] == [c.id for c in cuts[2:]] and manifest.stats.num_cuts == 2


def test_targets_of_another_tokenizer_or_teacher_are_refused(generated, corpus, other_teacher_dir, tmp_path):
    tokenizer = Tokenizer(corpus.bpe_model)
    with pytest.raises(TargetsError, match="tokenizer") as error:
        TargetLoader(generated.manifest, Tokenizer(corpus.other_bpe_model))
    assert str(corpus.bpe_model) in str(error.value) and str(corpus.other_bpe_model) in str(error.value)

    _, other = TeacherSpec(str(other_teacher_dir)).load("cpu")
    with pytest.raises(TargetsError, match="teacher") as error:
        TargetLoader(generated.manifest, tokenizer, teacher=other)
    teacher = generated.manifest.teacher
    assert teacher.describe() in str(error.value) and other.describe() in str(error.value)

    before = manifest_path(generated.out_dir, "mixed").read_text()
    with pytest.raises(TargetsError, match="Use another --out-dir, or --force") as error:
        generate_targets(
            TeacherSpec(str(other_teacher_dir)),
            corpus.cuts,
            generated.out_dir,
            "mixed",
            generated.manifest.config,
            2,
        )
    assert teacher.describe() in str(error.value) and other.describe() in str(error.value)
    assert manifest_path(generated.out_dir, "mixed").read_text() == before


def test_targets_that_do_not_fit_their_cut_are_refused(generated, corpus):
    loader = TargetLoader(generated.manifest, Tokenizer(corpus.bpe_model))
    cuts = [
        c for c in CutSet.from_file(targets_cuts_path(generated.out_dir, "mixed")) if c.supervisions[0].text
    ]
    cut = cuts[0]
    lens = torch.tensor([cut.num_frames])
    assert loader.collate(CutSet.from_cuts([cut]), lens)["frames"].tolist() == [cut.kd_targets["frames"]]

    stranger = cut.with_custom("kd_targets", {**cut.kd_targets, "teacher": "0123456789abcdef"})
    with pytest.raises(
        TargetsError, match=f"teacher with id 0123456789abcdef .*{generated.manifest.teacher.id}"
    ):
        loader.collate(CutSet.from_cuts([stranger]), lens)
    with pytest.raises(TargetsError, match="the student's encoder gives"):
        loader.collate(CutSet.from_cuts([cut]), lens + 8)
    edited = cut.with_custom("note", "edited")
    edited.supervisions[0] = edited.supervisions[0].transform_text(lambda text: text + " OAK")
    with pytest.raises(TargetsError, match="transcript changed after target generation"):
        loader.collate(CutSet.from_cuts([edited]), lens)


def test_one_shard_per_rank(corpus, teacher_dir, tmp_path):
    spec = TeacherSpec(str(teacher_dir))
    trained = spec.load("cpu")
    config = TargetConfig(types=["pruned", "enc_logits"], topk=2, prune_range=3)
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def rank(r: int) -> None:
        results[r] = generate_targets_of_rank(
            trained, corpus.labelled, tmp_path, "train", config, r, 2, barrier.wait, "cpu"
        )

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[1] is None and results[0].stats.num_cuts == 4
    assert all(shard_done(tmp_path, "train", s) for s in (0, 1))
    per_shard = [json.loads(shard_paths(tmp_path, "train", s)[1].read_text())["num_cuts"] for s in (0, 1)]
    assert per_shard == [2, 2]
    assert len(CutSet.from_file(targets_cuts_path(tmp_path, "train"))) == 4


def test_command_line_with_two_processes(corpus, teacher_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "kd.bin.generate_targets",
        "--exp-dir",
        str(teacher_dir),
        "--cuts",
        str(corpus.labelled),
        "--out-dir",
        str(tmp_path),
        "--types",
        "pruned",
        "enc_logits",
        "--topk",
        "3",
        "--prune-range",
        "3",
        "--nj",
        "2",
        "--device",
        "cpu",
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = load_manifest(tmp_path / "tiny_labelled_targets.json")
    assert (
        manifest.num_shards == 2
        and manifest.config.topk == 3
        and manifest.config.types == ["pruned", "enc_logits"]
    )
    assert manifest.stats.num_cuts == 4 and manifest.stats.bytes["pruned"] > 0
    assert "| pruned |" in run.stderr and "| enc_logits |" in run.stderr
    assert len(CutSet.from_file(tmp_path / "tiny_labelled_targets.jsonl.gz")) == 4
