"""Paper tables: chosen experiments side by side, over seeds, against a baseline row.

A tables file (``egs/<corpus>/tables.yaml``) maps a table name to its title, its rows and their baselines
(one row for all, or a mapping row -> baseline row)::

    c:
      title: (c) one-best-path distillation
      baseline: {one_best_labelled: none, one_best: none, streaming_one_best: streaming}
      rows: [teacher, none, one_best_labelled, one_best, streaming, streaming_one_best]

A row is a student row of ``run.sh`` (experiment ``student_<row>``, or ``student_<row>_seed<s>`` for each
seed) or ``teacher`` (the experiment ``teacher``, never repeated over seeds). Each table line gives the WER
per test set for one decoding method (mean +- std over seeds), the relative WER reduction against the
baseline row of the same seed, parameters (non-zeros), streaming models' measured latency (first pass, and
final for cascaded models; columns shown when some row has them, see :mod:`kd.decode.latency`), and the
training time read from the experiment's ``epochs.jsonl``. Experiments that are missing are listed as such,
never left out silently.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TEACHER = "teacher"
# Latency column header -> the field of the results' ``latency`` record (kd.decode.latency.LatencyStats).
LATENCY_COLUMNS = {"latency (ms)": "first_pass_latency_ms", "final latency (ms)": "final_latency_ms"}


@dataclass
class TableSpec:
    """A table: ``baseline`` maps a row to the row it is compared with (WERR); rows not in it have none."""

    name: str
    title: str
    rows: list[str]
    baseline: dict[str, str] = field(default_factory=dict)


@dataclass
class Measured:
    """One experiment's numbers: WER per test set (for the chosen method), sizes, training seconds, and a
    streaming model's latency: ``latency[key][set]`` in ms, ``key`` a value of :data:`LATENCY_COLUMNS`."""

    wer: dict[str, float] = field(default_factory=dict)
    num_params: int | None = None
    nonzero_params: int | None = None
    train_seconds: float | None = None
    latency: dict[str, dict[str, float]] = field(default_factory=dict)


def load_tables(path: str | Path) -> list[TableSpec]:
    """The tables of a tables file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tables file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must map table names to tables")
    tables = []
    for name, spec in data.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("rows"), list) or not spec["rows"]:
            raise ValueError(f"{path}: table {name!r} needs a non-empty list 'rows'")
        unknown = set(spec) - {"title", "rows", "baseline"}
        if unknown:
            raise ValueError(f"{path}: table {name!r} has unknown key(s) {sorted(unknown)}")
        rows = [str(r) for r in spec["rows"]]
        baseline = spec.get("baseline") or {}
        if isinstance(baseline, str):  # one baseline for every other row
            baseline = {r: baseline for r in rows if r not in (baseline, TEACHER)}
        if not isinstance(baseline, dict):
            raise ValueError(f"{path}: table {name!r}: 'baseline' must be a row or a mapping row -> row")
        stray = sorted({*baseline, *baseline.values()} - set(rows))
        if stray:
            raise ValueError(f"{path}: table {name!r}: baseline names {stray}, which are not among its rows")
        tables.append(TableSpec(str(name), str(spec.get("title", name)), rows, dict(baseline)))
    return tables


def select_tables(tables: Sequence[TableSpec], names: Sequence[str]) -> list[TableSpec]:
    """The tables called ``names`` (``all``: every table)."""
    if list(names) == ["all"]:
        return list(tables)
    known = {t.name: t for t in tables}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"no table(s) {missing}; the tables file has {sorted(known)}")
    return [known[n] for n in names]


def student_rows(tables: Sequence[TableSpec]) -> list[str]:
    """Every student row the tables need, once, in order of first appearance."""
    rows: list[str] = []
    for t in tables:
        rows += [r for r in t.rows if r != TEACHER and r not in rows]
    return rows


def experiment_dir(exp_root: Path, row: str, seed: int | None) -> Path:
    if row == TEACHER:
        return exp_root / TEACHER
    return exp_root / (f"student_{row}" if seed is None else f"student_{row}_seed{seed}")


def train_seconds(exp_dir: Path, epoch: int | None = None) -> float | None:
    """Wall seconds of the epochs up to ``epoch`` (all when None) from ``epochs.jsonl``; None without it.
    An epoch recorded twice (redone after a kill) counts its last record."""
    path = exp_dir / "epochs.jsonl"
    if not path.is_file():
        return None
    last: dict[int, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            last[int(record["epoch"])] = float(record["seconds"])
    return sum(s for e, s in last.items() if epoch is None or e <= epoch)


def measure(exp_dir: Path, method: str) -> Measured | None:
    """The decoded results of ``exp_dir`` for ``method``; None when it has none."""
    out = Measured()
    epoch = None
    for path in sorted(exp_dir.glob(f"wer-*-{method}.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("method") != method:
            continue  # e.g. wer-dev-greedy_search.json when asking for "search"
        out.wer[data["set"]] = float(data["wer"])
        latency = data.get("latency") or {}
        for key in LATENCY_COLUMNS.values():
            if latency.get(key) is not None:
                out.latency.setdefault(key, {})[data["set"]] = float(latency[key])
        model = data.get("model") or {}
        out.num_params = model.get("num_params", out.num_params)
        out.nonzero_params = model.get("nonzero_params", out.nonzero_params)
        epoch = model.get("epoch", epoch)
    if not out.wer:
        return None
    out.train_seconds = train_seconds(exp_dir, epoch)
    return out


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def _size(m: Measured) -> str:
    if m.num_params is None:
        return "-"
    total = f"{m.num_params / 1e6:.2f} M"
    if m.nonzero_params is not None and m.nonzero_params < 0.99 * m.num_params:
        return f"{total} ({m.nonzero_params / 1e6:.2f} M non-zero)"
    return total


def _latency_columns(runs: dict[str, dict[int | None, Measured]]) -> list[tuple[str, str]]:
    """(header, latency key) of the latency columns that some experiment has."""
    measured = [m for r in runs.values() for m in r.values()]
    return [(title, key) for title, key in LATENCY_COLUMNS.items() if any(key in m.latency for m in measured)]


def render_table(
    spec: TableSpec, exp_root: str | Path, seeds: Sequence[int] | None, method: str = "greedy_search"
) -> str:
    """A Markdown table for ``spec`` from the experiments under ``exp_root``.

    Args:
        seeds: the seeds the students were trained with (``run.sh --seeds``); None: one run per row,
            in ``student_<row>``.
        method: the decoding method whose WERs are shown.
    """
    exp_root = Path(exp_root)
    runs: dict[str, dict[int | None, Measured]] = {}
    missing: list[str] = []
    for row in spec.rows:
        row_seeds = [None] if row == TEACHER or not seeds else list(seeds)
        runs[row] = {}
        for s in row_seeds:
            measured = measure(experiment_dir(exp_root, row, s), method)
            if measured is None:
                missing.append(experiment_dir(exp_root, row, s).name)
            else:
                runs[row][s] = measured
    sets = sorted({t for r in runs.values() for m in r.values() for t in m.wer})
    header = ["row", *(f"{t} WER (%)" for t in sets)]
    if spec.baseline:
        header += [f"{t} WERR (%)" for t in sets]
    latency_columns = _latency_columns(runs)
    header += ["params", *(title for title, _ in latency_columns), "train time (min)", "runs"]
    lines = [f"**{spec.title}** ({method})", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in spec.rows:
        measured = runs[row]
        label = f"{row} (vs {spec.baseline[row]})" if row in spec.baseline else row
        if not measured:
            lines.append("| " + " | ".join([label, *["not run"] * (len(header) - 1)]) + " |")
            continue
        cells = [label]
        for t in sets:
            values = [m.wer[t] for m in measured.values() if t in m.wer]
            cells.append(_mean_std(values) if values else "-")
        if spec.baseline:
            base = runs.get(spec.baseline.get(row, ""), {})
            for t in sets:
                # Relative WER reduction against the baseline row trained with the same seed.
                werr = [
                    100.0 * (1.0 - m.wer[t] / base[s].wer[t])
                    for s, m in measured.items()
                    if t in m.wer and s in base and base[s].wer.get(t)
                ]
                cells.append(_mean_std(werr) if werr else "-")
        first = next(iter(measured.values()))
        cells.append(_size(first))
        for _, key in latency_columns:
            # Latency hardly depends on the test set: one number per experiment, its mean over the sets.
            per_run = [
                statistics.mean(m.latency[key].values()) for m in measured.values() if key in m.latency
            ]
            cells.append(_mean_std(per_run) if per_run else "-")
        times = [m.train_seconds for m in measured.values() if m.train_seconds is not None]
        cells.append(_mean_std([t / 60 for t in times]) if times else "-")
        cells.append(str(len(measured)))
        lines.append("| " + " | ".join(cells) + " |")
    if missing:
        lines += ["", f"Not decoded (run stages 7-8 for them): {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def render_tables(
    specs: Sequence[TableSpec],
    exp_root: str | Path,
    seeds: Sequence[int] | None,
    method: str = "greedy_search",
) -> str:
    """Every table of ``specs``, separated by blank lines."""
    return "\n".join(render_table(s, exp_root, seeds, method) for s in specs)
