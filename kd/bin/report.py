"""Collects every experiment's WERs into a Markdown table and a plot of WER against parameters.

python -m kd.bin.report exp/synth [more dirs ...] [--out results.md] [--plot wer.png]
python -m kd.bin.report exp/synth/student_* --best test greedy_search   # prints the best experiment's dir
python -m kd.bin.report exp/synth --tables egs/synth/tables.yaml [--names a c] [--seeds 1 2 3] [--out t.md]
python -m kd.bin.report exp/synth --tables egs/synth/tables.yaml --names a c --rows   # the rows they need
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kd.decode.atomic import write_text_atomic
from kd.decode.report import collect_results, markdown_table, plot_wer_vs_params
from kd.decode.tables import load_tables, render_tables, select_tables, student_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kd.bin.report", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", help="experiment directories, searched recursively for wer-*.json")
    parser.add_argument("--out", help="write the Markdown table here (it is always printed)")
    parser.add_argument("--plot", help="write a PNG of WER against parameters here")
    parser.add_argument(
        "--best",
        nargs=2,
        metavar=("SET", "METHOD"),
        help="only print the directory of the experiment with the lowest WER on SET with METHOD",
    )
    parser.add_argument(
        "--tables", type=Path, help="a tables file (egs/<corpus>/tables.yaml): print paper tables"
    )
    parser.add_argument("--names", nargs="+", default=["all"], help="--tables: which tables (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, help="--tables: the students' seeds (run.sh --seeds)")
    parser.add_argument("--method", default="greedy_search", help="--tables: the decoding method shown")
    parser.add_argument("--rows", action="store_true", help="--tables: only print the student rows they need")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.tables:
        try:
            tables = select_tables(load_tables(args.tables), args.names)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))
        text = (
            " ".join(student_rows(tables)) + "\n"
            if args.rows
            else render_tables(tables, args.dirs[0], args.seeds or None, args.method)
        )
        sys.stdout.write(text)
        if args.out and not args.rows:
            write_text_atomic(args.out, text)
        return

    try:
        rows = collect_results(args.dirs)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    if not rows:
        parser.error(f"no wer-*.json under {args.dirs}; run the decode stage first")
    if args.best:
        ranked = [r for r in rows if (r.test_set, r.method) == tuple(args.best)]
        if not ranked:
            parser.error(f"no {args.best[1]} result on {args.best[0]} under {args.dirs}")
        best = min(ranked, key=lambda r: r.wer)
        # Experiments are named relative to the parent of the directory given (see collect_results).
        candidates = [Path(d).resolve().parent / best.experiment for d in args.dirs]
        print(next(c for c in candidates if c.is_dir()))
        return
    table = markdown_table(rows)
    sys.stdout.write(table)
    if args.out:
        write_text_atomic(args.out, table)
        logging.info("wrote %s (%d results)", args.out, len(rows))
    if args.plot:
        plotted = plot_wer_vs_params(rows, args.plot)
        if plotted < len(rows):
            logging.warning("%d result(s) have no model.num_params and are not plotted", len(rows) - plotted)
        logging.info("wrote %s (%d points)", args.plot, plotted)


if __name__ == "__main__":
    main()
