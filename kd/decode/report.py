"""Result tables across experiments: every ``wer-*.json`` under some directories, as a Markdown table and
a plot of WER against model size. Streaming models' measured latency (:mod:`kd.decode.latency`) gets a
column when any result has it: the first-pass latency, and for cascaded models the final latency."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kd.decode.atomic import write_atomic

_REQUIRED = ("set", "method", "wer", "ins", "del", "sub")


@dataclass
class ResultRow:
    experiment: str
    test_set: str
    method: str
    wer: float
    ins: int
    dels: int
    subs: int
    num_params: int | None
    rtf: float | None
    latency_ms: float | None = None  # first-pass latency of a streaming model
    final_latency_ms: float | None = None  # a cascaded model's second-pass latency


def _read(path: Path, experiment: str) -> ResultRow:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); rerun the decode stage to rewrite it") from e
    missing = [k for k in _REQUIRED if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"{path}: lacks {missing}; it was not written by kd.decode.scoring.save_results")
    model = data.get("model") or {}
    latency = data.get("latency") or {}
    return ResultRow(
        experiment=experiment,
        test_set=data["set"],
        method=data["method"],
        wer=float(data["wer"]),
        ins=int(data["ins"]),
        dels=int(data["del"]),
        subs=int(data["sub"]),
        num_params=model.get("num_params"),
        rtf=data.get("rtf"),
        latency_ms=latency.get("first_pass_latency_ms"),
        final_latency_ms=latency.get("final_latency_ms"),
    )


def collect_results(dirs: Sequence[str | Path]) -> list[ResultRow]:
    """Reads every ``wer-*.json`` below each directory, sorted by experiment, set and method.

    An experiment is named by its directory's path relative to the parent of the directory given, so
    ``exp`` yields ``exp/synth/teacher`` and ``exp/synth/teacher`` yields ``teacher``.
    """
    rows: dict[Path, ResultRow] = {}
    for root in map(Path, dirs):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory; pass experiment directories, e.g. exp/synth")
        base = root.resolve().parent
        for path in root.rglob("wer-*.json"):
            key = path.resolve()
            if key not in rows:
                rows[key] = _read(path, key.parent.relative_to(base).as_posix())
    return sorted(rows.values(), key=lambda r: (r.experiment, r.test_set, r.method))


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def markdown_table(rows: Sequence[ResultRow]) -> str:
    """One line per (experiment, set, method); the latency columns only when some row has a latency."""
    columns = [
        ("latency (ms)", lambda r: r.latency_ms),
        ("final latency (ms)", lambda r: r.final_latency_ms),
    ]
    columns = [(title, get) for title, get in columns if any(get(r) is not None for r in rows)]
    header = ["experiment", "set", "method", "WER (%)", "ins", "del", "sub", "params", "RTF"]
    header += [title for title, _ in columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|",
    ]
    for r in rows:
        params = f"{r.num_params / 1e6:.2f} M" if r.num_params is not None else "-"
        rtf = f"{r.rtf:.4f}" if r.rtf is not None else "-"
        cells = [r.experiment, r.test_set, r.method, f"{r.wer:.2f}", str(r.ins), str(r.dels), str(r.subs)]
        cells += [params, rtf, *(_ms(get(r)) for _, get in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_wer_vs_params(rows: Sequence[ResultRow], path: str | Path) -> int:
    """Writes a PNG of WER against parameters, one series per (set, method), points labelled by
    experiment. Returns the number of points plotted (rows without a parameter count are left out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [r for r in rows if r.num_params is not None]
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for series in sorted({(r.test_set, r.method) for r in points}):
        chosen = sorted((r for r in points if (r.test_set, r.method) == series), key=lambda r: r.num_params)
        xs = [r.num_params / 1e6 for r in chosen]
        ax.plot(xs, [r.wer for r in chosen], marker="o", linestyle="none", label=f"{series[0]} / {series[1]}")
        for r, x in zip(chosen, xs):
            ax.annotate(r.experiment, (x, r.wer), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("WER (%)")
    ax.set_title("WER vs model size")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(fontsize=8)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return len(points)
