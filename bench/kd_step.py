"""KD training-step benchmark: time and peak memory of one training step per distillation method, against
the plain step of the same architecture, in one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/kd_step.py [--cuts data/synth/fbank/synth_cuts_dev.jsonl.gz]
        [--config egs/synth/conf/student.yaml] [--teacher-dir exp/synth/teacher]
        [--teacher-config egs/synth/conf/teacher.yaml] [--students-dir egs/synth/conf/students]
        [--cascaded-teacher-dir exp/synth/student_cascaded_teacher]
        [--cascaded-teacher-config egs/synth/conf/cascaded_teacher.yaml]
        [--bpe-model data/synth/lang_bpe_256/bpe.model] [--batches 5] [--repeats 3] [--threads 1]

A step is what kd.train.trainer does per batch, without logging: the objective's forward (the transducer
loss plus the KD term), backward of the per-frame loss, gradient clipping, AdamW step and, for a sparse
model, the pruner re-applying its masks. Every row trains its own model, randomly initialised (seed
--seed), with its own optimiser, at a global step past its config's loss, layer and pruning warm-ups. The
batches are the first --batches of --cuts (stored features, manifest order, no SpecAugment, the
max_duration of --config), skipping cuts whose tokens do not fit a pruned lattice (as target generation
does); every row steps on the same batches.

Tables (each row's ratios are to its table's reference step):
1. KD methods for the student of --config, against its plain step (kd.method none): collapsed on the
   pruned and on the full lattice (kd.lattice, chunked by kd.chunk_frames); one_best; soft_lattice;
   encoder_logits; hard; each reading stored targets; then soft_lattice and encoder_logits with an online
   teacher (kd.source online: kd.train.distill.OnlineTeacher runs the teacher inside the step, computing
   that method's target types for every batch).
2. Co-learning, the student rows colearn and colearn_shared of --students-dir (kd.mode colearn: a teacher
   of --teacher-config's architecture and the student train together, kd.models.colearn.CoLearner,
   kd.train.distill.CoLearnObjective), against the teacher's plain step (--teacher-config) plus the
   student's, each run separately; the reference's memory is the sum of the two, what a step holding both
   models' activations at once would add with no overhead.
3. Sparse students, the rows sparse60, sparse60_collapsed and sparse90_collapsed (the teacher's
   architecture, every pruned tensor at its final sparsity; collapsed KD from stored pxpy of the unpruned
   teacher), against the plain step of --teacher-config. Past the pruning schedule the pruner only
   re-applies the masks after each optimiser step (kd.train.sparsity.Pruner.step, as the trainer calls it):
   that cost is in the step; the mask updates of the schedule (a top-k per tensor every update_every
   steps) are not.
4. The cascaded student (row cascaded, METHODS.md (e)) and cascaded_kd (soft_lattice on both passes from
   the cascaded teacher) with stored targets and with its online teacher, against cascaded's plain step.
Stored targets are computed once up front (kd.targets.compute.compute_targets, the row's top-k and prune
settings) and collated per row (kd.targets.loading.collate_computed) as the data loader delivers them, so
those steps measure the student side only.

The configs' ``${KD_*}`` paths are set as run.sh exports them: the cut sets are --cuts (targets are
computed here, not read from them), the BPE model --bpe-model, the teacher --teacher-dir; each KD row's
kd.teacher is its teacher's directory. The teacher is the newest checkpoint of --teacher-dir, the cascaded
teacher that of --cascaded-teacher-dir (run.sh's directory of the row cascaded_teacher); without a loadable
one, a randomly initialised model of --teacher-config or --cascaded-teacher-config (the header says which
and why). The weights change the targets' values and the one-best paths' lengths, not the other shapes, so
they hardly move a step's time; the rows' own models are randomly initialised for the same reason (a
sparse student starts from the teacher's weights in run.sh; its masks then keep other entries, as many).

The measurements run in two fresh processes, one timing the steps and one measuring their memory; in both,
the rows take turns batch by batch (a change in a shared machine's load then hits them alike), after one
warm-up step each on the first batch (which also allocates AdamW's state).
Time: per batch the median wall-clock over --repeats steps; the tables give its mean over the batches.
Memory: before each step the kernel's peak-RSS mark is reset (writing 5 to /proc/self/clear_refs); the
figure is VmHWM after the step minus VmRSS before it, the largest over the batches: the peak resident
memory the step added on top of the models, optimiser states, batches and targets (activations, saved
tensors, gradients; for the online rows also the teacher's forward). glibc's mmap threshold is pinned to
64 KiB in that process, so freed tensors go back to the OS instead of staying in malloc's heap, where a
later step would reuse them unseen (not in the timing process: the page faults that costs would distort
the times). CPU only.
Threads: torch.set_num_threads(--threads), default 1, and OMP_NUM_THREADS=1: the benchmark is meant to
share a 2-CPU machine with other jobs (the defaults take about 8 minutes there); pass --threads 2 on an
idle machine.

The goal checked at the end: every stored-target method of table 1 at most 1.25x the plain step's time;
the memory ratios (the full lattice's above all) are reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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

from bench.machine import cpu_name, reset_peak_rss, status_kib  # noqa: E402
from kd.config import ConfigError, load_yaml, save_yaml  # noqa: E402
from kd.data.datamodule import AsrDataModule  # noqa: E402
from kd.data.dataset import cut_text  # noqa: E402
from kd.data.tokenizer import Tokenizer  # noqa: E402
from kd.models import build_model, count_parameters  # noqa: E402
from kd.models.subsampling import subsampled_lengths  # noqa: E402
from kd.targets.compute import compute_targets, lattice_problem  # noqa: E402
from kd.targets.config import TargetConfig  # noqa: E402
from kd.targets.loading import collate_computed  # noqa: E402
from kd.train.checkpoint import epoch_checkpoints, save_checkpoint  # noqa: E402
from kd.train.config import TrainConfig  # noqa: E402
from kd.train.distill import (  # noqa: E402
    CoLearnObjective,
    DistillObjective,
    OnlineTeacher,
    build_training_model,
)
from kd.train.objective import BatchLoss, Objective, TransducerObjective  # noqa: E402
from kd.train.optim import build_optimizer  # noqa: E402
from kd.train.restore import TrainedModel, load_trained_model  # noqa: E402
from kd.train.sparsity import Pruner  # noqa: E402

GOAL = 1.25  # every stored-target method's step at most this many times the plain step
STUDENT, TEACHER = "--config", "--teacher-config"  # the configs of those options; other names: student rows
STATIC, CASCADED = "teacher", "cascaded teacher"  # the teachers of the KD targets


@dataclasses.dataclass(frozen=True)
class Row:
    """A measured training step: its config, with ``key.sub=value`` overrides, and its KD targets' teacher.

    ``config`` is :data:`STUDENT`, :data:`TEACHER` or a student row of --students-dir (its file's stem);
    ``teacher`` is :data:`STATIC` or :data:`CASCADED`, None for a row without one (a plain step, co-learning).
    """

    config: str
    overrides: tuple[str, ...] = ()
    teacher: str | None = None


PLAIN = "none (plain)"
TEACHER_PLAIN = "teacher: none (plain)"
CASCADED_PLAIN = "cascaded: none (plain)"
ROWS: dict[str, Row] = {
    PLAIN: Row(STUDENT, ("kd.method=none",)),
    "collapsed, pruned lattice": Row(STUDENT, ("kd.method=collapsed", "kd.lattice=pruned"), STATIC),
    "collapsed, full lattice (chunked)": Row(STUDENT, ("kd.method=collapsed", "kd.lattice=full"), STATIC),
    "one_best": Row(STUDENT, ("kd.method=one_best",), STATIC),
    "soft_lattice": Row(STUDENT, ("kd.method=soft_lattice",), STATIC),
    "encoder_logits": Row(STUDENT, ("kd.method=encoder_logits",), STATIC),
    "hard": Row(STUDENT, ("kd.method=hard",), STATIC),
    "soft_lattice, online teacher": Row(STUDENT, ("kd.method=soft_lattice", "kd.source=online"), STATIC),
    "encoder_logits, online teacher": Row(STUDENT, ("kd.method=encoder_logits", "kd.source=online"), STATIC),
    TEACHER_PLAIN: Row(TEACHER, ("kd.method=none",)),
    "colearn": Row("colearn"),
    "colearn_shared (shared decoder)": Row("colearn_shared"),
    "sparse60 (60%, no KD)": Row("sparse60"),
    "sparse60_collapsed (60%, collapsed)": Row("sparse60_collapsed", teacher=STATIC),
    "sparse90_collapsed (90%, collapsed)": Row("sparse90_collapsed", teacher=STATIC),
    CASCADED_PLAIN: Row("cascaded"),
    "cascaded_kd, stored targets": Row("cascaded_kd", ("kd.source=stored",), CASCADED),
    "cascaded_kd, online teacher": Row("cascaded_kd", (), CASCADED),
}


@dataclasses.dataclass(frozen=True)
class Table:
    """Rows against one reference step. Each label shows the sum of its rows' steps (one row, or the
    separately run parts of a reference); the reference is one of the labels."""

    title: str
    rows: dict[str, tuple[str, ...]]
    reference: str
    reference_name: str  # the reference in the ratio columns' headers


SEPARATE = "teacher + student, run separately"
TABLES = (
    Table(
        "KD methods", {row: (row,) for row, spec in ROWS.items() if spec.config == STUDENT}, PLAIN, "plain"
    ),
    Table(
        "Co-learning (kd.mode colearn): ratios to the teacher's plain step plus the student's",
        {
            TEACHER_PLAIN: (TEACHER_PLAIN,),
            "student: none (plain)": (PLAIN,),
            SEPARATE: (TEACHER_PLAIN, PLAIN),
            "colearn": ("colearn",),
            "colearn_shared (shared decoder)": ("colearn_shared (shared decoder)",),
        },
        SEPARATE,
        "teacher + student",
    ),
    Table(
        "Sparse students (the teacher's architecture): ratios to the teacher's plain step",
        {
            row: (row,)
            for row in (
                TEACHER_PLAIN,
                "sparse60 (60%, no KD)",
                "sparse60_collapsed (60%, collapsed)",
                "sparse90_collapsed (90%, collapsed)",
            )
        },
        TEACHER_PLAIN,
        "teacher",
    ),
    Table(
        "Cascaded student (soft_lattice on both passes): ratios to its plain step",
        {
            row: (row,)
            for row in (CASCADED_PLAIN, "cascaded_kd, stored targets", "cascaded_kd, online teacher")
        },
        CASCADED_PLAIN,
        "cascaded plain",
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=Path, default=Path("data/synth/fbank/synth_cuts_dev.jsonl.gz"))
    parser.add_argument("--config", type=Path, default=Path("egs/synth/conf/student.yaml"))
    parser.add_argument("--teacher-dir", type=Path, default=Path("exp/synth/teacher"))
    parser.add_argument("--teacher-config", type=Path, default=Path("egs/synth/conf/teacher.yaml"))
    parser.add_argument("--students-dir", type=Path, default=Path("egs/synth/conf/students"))
    parser.add_argument(
        "--cascaded-teacher-dir", type=Path, default=Path("exp/synth/student_cascaded_teacher")
    )
    parser.add_argument(
        "--cascaded-teacher-config", type=Path, default=Path("egs/synth/conf/cascaded_teacher.yaml")
    )
    parser.add_argument("--bpe-model", type=Path, default=Path("data/synth/lang_bpe_256/bpe.model"))
    parser.add_argument("--batches", type=int, default=5, help="batches of --cuts to step on")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per batch and row")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the models' initial weights")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batches < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--batches, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
    _export_paths(args)
    if args.worker:
        mode, data = args.worker
        print(json.dumps(_measure(mode, Path(data), args)))
        return
    if not args.cuts.is_file():
        raise SystemExit(f"{args.cuts} not found: run the data stages of run.sh (or pass --cuts)")
    tokenizer = Tokenizer(args.bpe_model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teachers = {
            STATIC: _teacher(args.teacher_dir, args.teacher_config, tmp),
            CASCADED: _teacher(args.cascaded_teacher_dir, args.cascaded_teacher_config, tmp),
        }
        for name, (_, teacher, described) in teachers.items():
            if teacher.tokenizer.vocab_size != tokenizer.vocab_size:
                raise SystemExit(
                    f"the {name} ({described}) has a {teacher.tokenizer.vocab_size}-token vocabulary, "
                    f"--bpe-model {args.bpe_model} {tokenizer.vocab_size}: pass the teachers' BPE model"
                )
        teacher_dirs = {name: str(exp_dir) for name, (exp_dir, _, _) in teachers.items()}
        configs = _row_configs(args, teacher_dirs)
        params = _params(configs, tokenizer.vocab_size)  # builds every row's model: a bad config fails here
        student = configs[PLAIN]
        batches, skipped = _batches(args, student, tokenizer)
        data = tmp / "batches.pt"
        models = {name: teacher.model for name, (_, teacher, _) in teachers.items()}
        torch.save(
            {
                "batches": batches,
                "targets": _stored_targets(models, batches, configs, tokenizer),
                "teacher_dirs": teacher_dirs,
            },
            data,
        )
        timed = _run_worker("time", data, args)
        measured = _run_worker("memory", data, args)
    results = {row: {**timed[row], **measured[row]} for row in ROWS}
    utts = sum(len(b["texts"]) for b in batches)
    frames = sum(int(b["feature_lens"].sum()) for b in batches)
    print(f"# one training step per KD method, vocabulary {tokenizer.vocab_size}; parameters: {params}")
    print(
        f"# {len(batches)} batches of {args.cuts} at max_duration {student.data.max_duration:g} s: {utts} "
        f"utterances, {frames / 100:.1f} s of audio ({skipped} cuts skipped: no lattice)"
    )
    for name, (_, teacher, described) in teachers.items():
        print(f"# {name}: {described}, {count_parameters(teacher.model)['total'] / 1e6:.2f} M parameters")
    print(f"# stored targets computed once up front, k={student.kd.topk}, s_range={student.loss.prune_range}")
    print(f"# {cpu_name()}, torch {torch.__version__}, torch.set_num_threads({args.threads}), cpu")
    print(f"# time: mean over the batches of the median of {args.repeats} steps; memory: largest over them")
    for table in TABLES:
        print(f"\n{table.title}\n")
        _print_table(table, results)
    print()
    plain = results[PLAIN]["ms"]
    for row in TABLES[0].rows:
        kd = configs[row].kd
        if kd.method == "none" or kd.source == "online":
            continue
        ratio = results[row]["ms"] / plain
        verdict = "meets" if ratio <= GOAL else "misses"
        print(f"{row}: {ratio:.2f}x the plain step ({verdict} the {GOAL}x goal)")
    for row, r in results.items():
        if "teacher_ms" in r:
            print(
                f"{row}: {r['teacher_ms']:.1f} ms of its step in the teacher computing {r['teacher_types']} "
                "(mean over the batches of the median)"
            )


def _export_paths(args: argparse.Namespace) -> None:
    """Sets the environment variables the configs' paths read, as run.sh exports them."""
    for name in ("KD_TRAIN_CUTS", "KD_VALID_CUTS", "KD_TRAIN_TARGETS"):
        os.environ[name] = str(args.cuts)
    os.environ["KD_BPE_MODEL"] = str(args.bpe_model)
    os.environ["KD_TEACHER"] = str(args.teacher_dir)


def _row_configs(args: argparse.Namespace, teacher_dirs: dict[str, str]) -> dict[str, TrainConfig]:
    """``{row: its training config}``; a row's KD teacher (kd.teacher) is ``teacher_dirs[row.teacher]``."""
    paths = {STUDENT: args.config, TEACHER: args.teacher_config}
    configs = {}
    for name, row in ROWS.items():
        path = paths.get(row.config, args.students_dir / f"{row.config}.yaml")
        overrides = list(row.overrides)
        if row.teacher is not None:
            overrides.append(f"kd.teacher={teacher_dirs[row.teacher]}")
        configs[name] = load_yaml(TrainConfig, path, overrides)
    return configs


def _params(configs: dict[str, TrainConfig], vocab_size: int) -> str:
    """The parameter counts of the rows' models, the configs of one architecture together (a co-learner
    counts both of its models)."""
    names: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for name, row in ROWS.items():
        kd = configs[name].kd
        architecture = repr((configs[name].model, kd.teacher_model, kd.shared_decoder))
        if architecture not in counts:
            model = build_training_model(configs[name], vocab_size)
            counts[architecture] = count_parameters(model)["total"]
        if row.config not in names.setdefault(architecture, []):
            names[architecture].append(row.config)
    return ", ".join(f"{'/'.join(names[a])} {counts[a] / 1e6:.2f} M" for a in names)


def _print_table(table: Table, results: dict[str, dict[str, Any]]) -> None:
    """A Markdown table of ``table``'s labels: time and memory (each summed over the label's rows) and
    their ratios to the reference."""
    sums = {
        label: {key: sum(results[row][key] for row in rows) for key in ("ms", "peak_mib")}
        for label, rows in table.rows.items()
    }
    ref = sums[table.reference]
    name = table.reference_name
    print(f"| method | step time median (ms) | ratio to {name} | peak memory (MiB) | ratio to {name} |")
    print("|---|---:|---:|---:|---:|")
    for label, r in sums.items():
        cells = [
            label,
            f"{r['ms']:.1f}",
            f"{r['ms'] / ref['ms']:.2f}x",
            f"{r['peak_mib']:.1f}",
            f"{r['peak_mib'] / ref['peak_mib']:.2f}x",
        ]
        print("| " + " | ".join(cells) + " |")


def _teacher(exp_dir: Path, config_path: Path, tmp: Path) -> tuple[Path, TrainedModel, str]:
    """The teacher's experiment directory (``exp_dir``, or one made in ``tmp`` for a randomly initialised
    model of ``config_path``), the teacher loaded from it, and a description of it."""
    found = epoch_checkpoints(exp_dir) if exp_dir.is_dir() else {}
    why = f"no checkpoint in {exp_dir}"
    if found:
        try:
            trained = load_trained_model(exp_dir)
            return exp_dir, trained, f"{exp_dir} epoch {max(found)} (trained)"
        except ConfigError as e:
            # e.g. a checkpoint of an older model layout: a step hardly depends on the weights
            why = f"{exp_dir} epoch {max(found)} does not load: {str(e).split(' (')[0]}"
    config = load_yaml(TrainConfig, config_path)
    torch.manual_seed(0)
    model = build_model(config.model, Tokenizer(config.paths.bpe_model).vocab_size)
    random_dir = tmp / f"random_{config_path.stem}"
    save_yaml(config, random_dir / "config.yaml")
    save_checkpoint(random_dir / "epoch-1.pt", {"model": model.state_dict(), "global_step": 0})
    return random_dir, load_trained_model(random_dir), f"randomly initialised {config_path} ({why})"


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
    teachers: dict[str, torch.nn.Module],
    batches: list[dict[str, Any]],
    configs: dict[str, TrainConfig],
    tokenizer: Tokenizer,
) -> dict[str, list[dict[str, Any]]]:
    """``{row: per batch its collated targets}`` of the stored-target rows. Rows of one teacher and the same
    settings (those an online teacher of the row would use) share one computation per batch, of the types
    they read together."""
    groups: dict[tuple[str, str], list[str]] = {}
    for row, config in configs.items():
        kd = config.kd
        if kd.target_types and kd.source == "stored":
            groups.setdefault((str(ROWS[row].teacher), repr(_target_settings(config))), []).append(row)
    out = {}
    for (teacher, _), rows in groups.items():
        types = [t for row in rows for t in configs[row].kd.target_types]
        settings = dataclasses.replace(_target_settings(configs[rows[0]]), types=sorted(set(types)))
        computed = [
            compute_targets(
                teachers[teacher], b["features"], b["feature_lens"], tokenizer.encode(b["texts"]), settings
            )
            for b in batches
        ]
        for row in rows:
            kd = configs[row].kd
            out[row] = [collate_computed(c, kd.target_types, kd.shift, tokenizer) for c in computed]
    return out


def _target_settings(config: TrainConfig) -> TargetConfig:
    """The target settings (every type) of a config's KD teacher: its top-k and the prune settings."""
    return TargetConfig(
        topk=config.kd.topk,
        prune_range=config.loss.prune_range,
        lm_scale=config.loss.lm_scale,
        am_scale=config.loss.am_scale,
        rnnt_type=config.loss.rnnt_type,
    )


def _run_worker(mode: str, data: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    env = dict(os.environ)
    if mode == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    command = [sys.executable, __file__, "--worker", mode, str(data)]
    names = ("cuts", "config", "teacher_dir", "teacher_config", "students_dir", "bpe_model")
    for name in (*names, "batches", "repeats", "threads", "seed"):
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
    """One row: its model, optimiser, objective, batches (with the row's stored targets), the global step
    it trains at, its gradient clipping, and its online teacher and pruner, if any."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    objective: Objective
    batches: list[dict[str, Any]]
    global_step: int
    grad_clip: float
    teacher: _TimedTeacher | None = None
    pruner: Pruner | None = None

    def step(self, index: int) -> BatchLoss:
        """One training step on batch ``index``, as kd.train.trainer takes it."""
        loss = self.objective(self.model, self.batches[index], self.global_step)
        (loss.total / max(loss.num_frames, 1)).backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.grad_clip if self.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.pruner is not None:
            self.pruner.step(self.global_step)
        return loss


def _build_run(row: str, config: TrainConfig, data: dict[str, Any], tokenizer: Tokenizer, seed: int) -> _Run:
    """A row's model (initialised with ``seed``), optimiser, objective, pruner and batches, as the trainer
    sets them up, at a global step past the loss, layer and pruning warm-ups."""
    torch.manual_seed(seed)
    model = build_training_model(config, tokenizer.vocab_size).train()
    optimizer, _ = build_optimizer(model, config.optim)
    kd, batches, teacher = config.kd, data["batches"], None
    objective: Objective
    if kd.mode == "colearn":
        objective = CoLearnObjective(config.loss, kd, tokenizer)
    elif kd.method == "none":
        objective = TransducerObjective(config.loss, tokenizer)
    elif kd.source == "online":
        teacher = _TimedTeacher(OnlineTeacher(kd, config.loss, tokenizer, torch.device("cpu")))
        objective = DistillObjective(config.loss, kd, tokenizer, teacher)
    else:
        batches = [{**b, "targets": t} for b, t in zip(batches, data["targets"][row])]
        objective = DistillObjective(config.loss, kd, tokenizer)
    # the simple/pruned weights are final and every encoder layer is fully in
    global_step = max(config.loss.warm_step, config.loss.layer_warm_step)
    pruner = None
    if config.sparsity.enabled:
        # past the schedule's last mask update: the masks are at the final sparsity, each step re-applies them
        global_step = max(global_step, config.sparsity.end_step + 1)
        pruner = Pruner(model, config.sparsity)
        pruner.step(global_step)
    return _Run(model, optimizer, objective, batches, global_step, config.optim.grad_clip, teacher, pruner)


def _measure(mode: str, data_path: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Times the rows' steps (mode "time") or measures their peak memory (mode "memory"); the rows take
    turns batch by batch."""
    data = torch.load(data_path)
    configs = _row_configs(args, data["teacher_dirs"])
    tokenizer = Tokenizer(args.bpe_model)
    runs = {row: _build_run(row, configs[row], data, tokenizer, args.seed) for row in ROWS}
    for run in runs.values():
        run.step(0)
        if run.teacher is not None:
            run.teacher.ms.clear()
    num_batches = len(data["batches"])
    if mode == "memory":
        peaks: dict[str, list[float]] = {row: [] for row in runs}
        for i in range(num_batches):
            for row, run in runs.items():
                base = reset_peak_rss()
                run.step(i)
                peaks[row].append((status_kib("VmHWM") - base) / 1024)
        return {row: {"peak_mib": max(v)} for row, v in peaks.items()}
    samples: dict[str, list[list[float]]] = {row: [[] for _ in range(num_batches)] for row in runs}
    for _ in range(args.repeats):
        for i in range(num_batches):
            for row, run in runs.items():
                start = time.perf_counter()
                run.step(i)
                samples[row][i].append(1e3 * (time.perf_counter() - start))
    out: dict[str, dict[str, Any]] = {}
    for row, run in runs.items():
        out[row] = {"ms": statistics.mean(statistics.median(v) for v in samples[row])}
        if run.teacher is not None:
            # the calls run batch after batch, repeat after repeat: regroup them per batch
            per_batch = [run.teacher.ms[i::num_batches] for i in range(num_batches)]
            out[row]["teacher_ms"] = statistics.mean(statistics.median(v) for v in per_batch)
            out[row]["teacher_types"] = run.teacher.teacher.target_config.types
    return out


if __name__ == "__main__":
    main()
