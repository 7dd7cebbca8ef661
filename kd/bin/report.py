"""Collects every experiment's WERs into a Markdown table and a plot of WER against parameters.

python -m kd.bin.report exp/synth [more dirs ...] [--out results.md] [--plot wer.png]
"""

from __future__ import annotations

import argparse
import logging
import sys

from kd.decode.atomic import write_text_atomic
from kd.decode.report import collect_results, markdown_table, plot_wer_vs_params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kd.bin.report", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", help="experiment directories, searched recursively for wer-*.json")
    parser.add_argument("--out", help="write the Markdown table here (it is always printed)")
    parser.add_argument("--plot", help="write a PNG of WER against parameters here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    try:
        rows = collect_results(args.dirs)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    if not rows:
        parser.error(f"no wer-*.json under {args.dirs}; run the decode stage first")
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
