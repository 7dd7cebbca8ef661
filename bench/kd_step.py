"""KD training-step benchmark: time and peak memory of one student step per distillation method, against the
plain student step (kd.method none), in one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/kd_step.py [--cuts data/synth/fbank/synth_cuts_dev.jsonl.gz]
        [--config egs/synth/conf/student.yaml] [--teacher-dir exp/synth/teacher]
        [--teacher-config egs/synth/conf/teacher.yaml] [--bpe-model data/synth/lang_bpe_256/bpe.model]
        [--batches 5] [--repeats 3] [--threads 1]

A step is what kd.train.trainer does per batch, without logging: the objective's forward (the student's
pruned RNN-T loss plus the KD term), backward of the per-frame loss, gradient clipping, AdamW step. The
student is the model section of --config, randomly initialised (seed --seed); every method trains its own
copy of it with its own optimiser. The batches are the first --batches of --cuts (stored features, manifest
order, no SpecAugment, the config's max_duration), skipping cuts whose tokens do not fit a pruned lattice
(as target generation does).

Rows (kd.train.distill): none; collapsed on the pruned and on the full lattice (kd.lattice, chunked by
kd.chunk_frames); one_best; soft_lattice; encoder_logits; hard; each reading stored targets. The teacher's
targets are computed once up front (kd.targets.compute.compute_targets, every type, the student's prune
settings) and collated per method (kd.targets.loading.collate_computed) as the data loader delivers stored
targets, so those steps measure the student side only. The extra row "soft_lattice, online teacher" runs
the teacher inside the step (kd.source online: kd.train.distill.OnlineTeacher), which computes that
method's target types, the beam-search hypothesis included, for every batch.
The teacher is the newest checkpoint of --teacher-dir; without a loadable one, a randomly initialised
model of --teacher-config (the header says which and why). The weights change the targets' values and
the one-best paths' lengths, not the other shapes, so they hardly move the student's step time.

The measurements run in two fresh processes, one timing the steps and one measuring their memory; in both,
the methods take turns batch by batch (a change in a shared machine's load then hits them alike), after
one warm-up step each on the first batch (which also allocates AdamW's state).
Time: per batch the median wall-clock over --repeats steps; the table gives its mean over the batches.
Memory: before each step the kernel's peak-RSS mark is reset (writing 5 to /proc/self/clear_refs); the
figure is VmHWM after the step minus VmRSS before it, the largest over the batches: the peak resident
memory the step added on top of the models, optimiser states, batches and targets (activations, saved
tensors, gradients; for the online row also the teacher's forward and search). glibc's mmap threshold is
pinned to 64 KiB in that process, so freed tensors go back to the OS instead of staying in malloc's heap,
where a later step would reuse them unseen (not in the timing process: the page faults that costs would
distort the times). CPU only.
Threads: torch.set_num_threads(--threads), default 1, and OMP_NUM_THREADS=1: the benchmark is meant to
share a 2-CPU machine with other jobs (the defaults take about 3 minutes there); pass --threads 2 on an
idle machine.

The goal checked at the end: every stored-target method at most 1.25x the plain step's time; the memory
ratios (the full lattice's above all) are reported.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lhotse import CutSet  # noqa: E402

from kd.config import ConfigError, load_yaml, save_yaml  # noqa: E402
from kd.data.datamodule import AsrDataModule  # noqa: E402
from kd.data.dataset import cut_text  # noqa: E402
from kd.data.tokenizer import Tokenizer  # noqa: E402
from kd.models import build_model, count_parameters  # noqa: E402
from kd.models.subsampling import subsampled_lengths  # noqa: E402
from kd.targets.compute import compute_targets, lattice_problem  # noqa: E402
from kd.targets.config import TARGET_TYPES, TargetConfig  # noqa: E402
from kd.targets.loading import collate_computed  # noqa: E402
from kd.train.checkpoint import epoch_checkpoints, save_checkpoint  # noqa: E402
from kd.train.config import TrainConfig  # noqa: E402
from kd.train.distill import DistillObjective, OnlineTeacher  # noqa: E402
from kd.train.objective import BatchLoss, TransducerObjective  # noqa: E402
from kd.train.optim import build_optimizer  # noqa: E402
from kd.train.restore import TrainedModel, load_trained_model  # noqa: E402

GOAL = 1.25  # every stored-target method's step at most this many times the plain step
PLAIN = "none (plain)"
ONLINE = "soft_lattice, online teacher"
# row -> the kd settings it overrides in the student's config
ROWS: dict[str, dict[str, str]] = {
    PLAIN: {"method": "none"},
    "collapsed, pruned lattice": {"method": "collapsed", "lattice": "pruned"},
    "collapsed, full lattice (chunked)": {"method": "collapsed", "lattice": "full"},
    "one_best": {"method": "one_best"},
    "soft_lattice": {"method": "soft_lattice"},
    "encoder_logits": {"method": "encoder_logits"},
    "hard": {"method": "hard"},
    ONLINE: {"method": "soft_lattice", "source": "online"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=Path, default=Path("data/synth/fbank/synth_cuts_dev.jsonl.gz"))
    parser.add_argument("--config", type=Path, default=Path("egs/synth/conf/student.yaml"))
    parser.add_argument("--teacher-dir", type=Path, default=Path("exp/synth/teacher"))
    parser.add_argument("--teacher-config", type=Path, default=Path("egs/synth/conf/teacher.yaml"))
    parser.add_argument("--bpe-model", type=Path, default=Path("data/synth/lang_bpe_256/bpe.model"))
    parser.add_argument("--batches", type=int, default=5, help="batches of --cuts to step on")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per batch and method")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the student's initial weights")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batches < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--batches, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
    if args.worker:
        mode, data = args.worker
        print(json.dumps(_measure(mode, Path(data), args)))
        return
    if not args.cuts.is_file():
        raise SystemExit(f"{args.cuts} not found: run the data stages of run.sh (or pass --cuts)")
    config = load_yaml(TrainConfig, args.config)
    tokenizer = Tokenizer(args.bpe_model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teacher_dir, teacher, described = _teacher(args, tmp)
        if teacher.tokenizer.vocab_size != tokenizer.vocab_size:
            raise SystemExit(
                f"the teacher ({described}) has a {teacher.tokenizer.vocab_size}-token vocabulary, "
                f"--bpe-model {args.bpe_model} {tokenizer.vocab_size}: pass the teacher's BPE model"
            )
        batches, skipped = _batches(args, config, tokenizer)
        data = tmp / "batches.pt"
        torch.save(
            {
                "batches": batches,
                "targets": _stored_targets(teacher.model, batches, config, tokenizer),
                "teacher_dir": str(teacher_dir),
            },
            data,
        )
        timed = _run_worker("time", data, args)
        measured = _run_worker("memory", data, args)
    student = build_model(config.model, tokenizer.vocab_size)
    utts = sum(len(b["texts"]) for b in batches)
    frames = sum(int(b["feature_lens"].sum()) for b in batches)
    print(
        f"# one training step of {args.config} ({count_parameters(student)['total'] / 1e6:.2f} M parameters, "
        f"vocabulary {tokenizer.vocab_size}), per KD method"
    )
    print(
        f"# {len(batches)} batches of {args.cuts} at max_duration {config.data.max_duration:g} s: {utts} "
        f"utterances, {frames / 100:.1f} s of audio ({skipped} cuts skipped: no lattice)"
    )
    settings = f"k={config.kd.topk}, s_range={config.loss.prune_range}"
    print(f"# teacher: {described}; its targets computed once up front, {settings}")
    print(f"# {_cpu_name()}, torch {torch.__version__}, torch.set_num_threads({args.threads}), cpu")
    print(f"# time: mean over the batches of the median of {args.repeats} steps; memory: largest over them\n")
    plain = {**timed[PLAIN], **measured[PLAIN]}
    print("| method | step time median (ms) | ratio to plain | peak memory (MiB) | ratio to plain |")
    print("|---|---:|---:|---:|---:|")
    for row in ROWS:
        r = {**timed[row], **measured[row]}
        cells = [
            row,
            f"{r['ms']:.1f}",
            f"{r['ms'] / plain['ms']:.2f}x",
            f"{r['peak_mib']:.1f}",
            f"{r['peak_mib'] / plain['peak_mib']:.2f}x",
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    for row in ROWS:
        if row in (PLAIN, ONLINE):
            continue
        ratio = timed[row]["ms"] / plain["ms"]
        verdict = "meets" if ratio <= GOAL else "misses"
        print(f"{row}: {ratio:.2f}x the plain step ({verdict} the {GOAL}x goal)")
    online = dataclasses.replace(config.kd, **ROWS[ONLINE], teacher=str(args.teacher_dir))
    print(
        f"{ONLINE}: {timed[ONLINE]['teacher_ms']:.1f} ms of its step in the teacher computing "
        f"{online.target_types} (mean over the batches of the median)"
    )


def _teacher(args: argparse.Namespace, tmp: Path) -> tuple[Path, TrainedModel, str]:
    """The teacher's experiment directory, the teacher loaded from it, and a description of it."""
    found = epoch_checkpoints(args.teacher_dir) if args.teacher_dir.is_dir() else {}
    why = f"no checkpoint in {args.teacher_dir}"
    if found:
        try:
            trained = load_trained_model(args.teacher_dir)
            return args.teacher_dir, trained, f"{args.teacher_dir} epoch {max(found)} (trained)"
        except ConfigError as e:
            # e.g. a checkpoint of an older model layout: the student's step hardly depends on the weights
            why = f"{args.teacher_dir} epoch {max(found)} does not load: {str(e).split(' (')[0]}"
    config = load_yaml(TrainConfig, args.teacher_config, [f"paths.bpe_model={args.bpe_model}"])
    torch.manual_seed(0)
    model = build_model(config.model, Tokenizer(args.bpe_model).vocab_size)
    exp_dir = tmp / "random_teacher"
    save_yaml(config, exp_dir / "config.yaml")
    save_checkpoint(exp_dir / "epoch-1.pt", {"model": model.state_dict(), "global_step": 0})
    return exp_dir, load_trained_model(exp_dir), f"randomly initialised {args.teacher_config} ({why})"


def _batches(
    args: argparse.Namespace, config: TrainConfig, tokenizer: Tokenizer
) -> tuple[list[dict[str, Any]], int]:
    """The first ``--batches`` evaluation batches of the cuts whose tokens fit a pruned lattice (features,
    feature_lens, texts, cut_ids), and how many cuts were skipped."""
    cuts = CutSet.from_file(args.cuts).to_eager()
    usable = []
    for cut in cuts:
        frames = int(subsampled_lengths(torch.tensor([cut.num_frames])))
        tokens = len(tokenizer.encode([cut_text(cut)])[0])
        if lattice_problem(frames, tokens, config.loss.prune_range, config.loss.rnnt_type) is None:
            usable.append(cut)
    batches = []
    for batch in AsrDataModule(config.data).eval_dataloader(CutSet.from_cuts(usable)):
        batches.append({k: batch[k] for k in ("features", "feature_lens", "texts", "cut_ids")})
        if len(batches) == args.batches:
            break
    return batches, len(cuts) - len(usable)


def _stored_targets(
    teacher: torch.nn.Module, batches: list[dict[str, Any]], config: TrainConfig, tokenizer: Tokenizer
) -> dict[str, list[dict[str, Any]]]:
    """``{row: per batch its collated targets}`` of the stored-target rows: every type computed once per
    batch, with the settings an online teacher of this student would use."""
    target_config = TargetConfig(
        types=list(TARGET_TYPES),
        topk=config.kd.topk,
        prune_range=config.loss.prune_range,
        lm_scale=config.loss.lm_scale,
        am_scale=config.loss.am_scale,
        rnnt_type=config.loss.rnnt_type,
    )
    computed = [
        compute_targets(
            teacher, b["features"], b["feature_lens"], tokenizer.encode(b["texts"]), target_config
        )
        for b in batches
    ]
    out = {}
    for row, overrides in ROWS.items():
        if overrides["method"] != "none" and overrides.get("source", "stored") == "stored":
            kd = dataclasses.replace(config.kd, **overrides)
            out[row] = [collate_computed(c, kd.target_types, kd.shift, tokenizer) for c in computed]
    return out


def _run_worker(mode: str, data: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    env = dict(os.environ)
    if mode == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    command = [sys.executable, __file__, "--worker", mode, str(data)]
    for name in ("config", "bpe_model", "batches", "repeats", "threads", "seed"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    # stderr goes straight through: the worker's errors show as they happen
    out = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit(f"benchmark worker ({mode}) failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class _TimedTeacher:
    """An online teacher that records the wall-clock milliseconds of each call."""

    def __init__(self, teacher: OnlineTeacher) -> None:
        self.teacher = teacher
        self.ms: list[float] = []

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        targets = self.teacher(batch)
        self.ms.append(1e3 * (time.perf_counter() - start))
        return targets


@dataclasses.dataclass
class _Run:
    """One row: its student copy, optimiser, objective and batches (with the row's stored targets)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    objective: TransducerObjective | DistillObjective
    batches: list[dict[str, Any]]
    teacher: _TimedTeacher | None = None

    def step(self, index: int, global_step: int, grad_clip: float) -> BatchLoss:
        """One training step on batch ``index``, as kd.train.trainer takes it."""
        loss = self.objective(self.model, self.batches[index], global_step)
        (loss.total / max(loss.num_frames, 1)).backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss


def _measure(mode: str, data_path: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Times the rows' steps (mode "time") or measures their peak memory (mode "memory"); the rows take
    turns batch by batch."""
    data = torch.load(data_path)
    config = load_yaml(TrainConfig, args.config)
    tokenizer = Tokenizer(args.bpe_model)
    device = torch.device("cpu")
    torch.manual_seed(args.seed)
    student = build_model(config.model, tokenizer.vocab_size)
    runs: dict[str, _Run] = {}
    for row, overrides in ROWS.items():
        kd = dataclasses.replace(config.kd, **overrides, teacher=data["teacher_dir"])
        model = copy.deepcopy(student).train()
        optimizer, _ = build_optimizer(model, config.optim)
        if kd.method == "none":
            runs[row] = _Run(model, optimizer, TransducerObjective(config.loss, tokenizer), data["batches"])
        elif kd.source == "online":
            teacher = _TimedTeacher(OnlineTeacher(kd, config.loss, tokenizer, device))
            objective = DistillObjective(config.loss, kd, tokenizer, teacher)
            runs[row] = _Run(model, optimizer, objective, data["batches"], teacher)
        else:
            batches = [{**b, "targets": t} for b, t in zip(data["batches"], data["targets"][row])]
            runs[row] = _Run(model, optimizer, DistillObjective(config.loss, kd, tokenizer), batches)
    # past the loss warm-up: the simple/pruned weights are final
    global_step, clip = config.loss.warm_step, config.optim.grad_clip
    for run in runs.values():
        run.step(0, global_step, clip)
        if run.teacher is not None:
            run.teacher.ms.clear()
    num_batches = len(data["batches"])
    if mode == "memory":
        peaks: dict[str, list[float]] = {row: [] for row in runs}
        for i in range(num_batches):
            for row, run in runs.items():
                base = _reset_peak_rss()
                run.step(i, global_step, clip)
                peaks[row].append((_status_kib("VmHWM") - base) / 1024)
        return {row: {"peak_mib": max(v)} for row, v in peaks.items()}
    samples: dict[str, list[list[float]]] = {row: [[] for _ in range(num_batches)] for row in runs}
    for _ in range(args.repeats):
        for i in range(num_batches):
            for row, run in runs.items():
                start = time.perf_counter()
                run.step(i, global_step, clip)
                samples[row][i].append(1e3 * (time.perf_counter() - start))
    out = {}
    for row, run in runs.items():
        out[row] = {"ms": statistics.mean(statistics.median(v) for v in samples[row])}
        if run.teacher is not None:
            # the calls run batch after batch, repeat after repeat: regroup them per batch
            per_batch = [run.teacher.ms[i::num_batches] for i in range(num_batches)]
            out[row]["teacher_ms"] = statistics.mean(statistics.median(v) for v in per_batch)
    return out


def _reset_peak_rss() -> int:
    """Resets VmHWM to the current RSS; returns the RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status (this benchmark needs Linux)")


def _cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} CPUs visible)"


if __name__ == "__main__":
    main()
