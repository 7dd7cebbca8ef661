"""Shared plumbing of the data-stage command-line tools: logging, and bad input as a one-line error."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from kd.data.errors import DataError


def add_fbank_options(parser: argparse.ArgumentParser, force_help: str) -> None:
    """The options of the tools that store fbank features: ``--nj``, ``--extractor`` and ``--force``."""
    parser.add_argument("--nj", type=int, default=1, help="parallel worker processes")
    parser.add_argument(
        "--extractor",
        choices=["auto", "lhotse", "kaldifeat"],
        default="auto",
        help="fbank implementation (auto: kaldifeat when importable, else lhotse's)",
    )
    parser.add_argument("--force", action="store_true", help=force_help)


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Runs ``main(argv)``; a :class:`DataError` is printed as ``error: ...`` and exits with status 1."""
    logging.basicConfig(format="%(asctime)s %(levelname)s [%(name)s] %(message)s", level=logging.INFO)
    try:
        main(argv)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
