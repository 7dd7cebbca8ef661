"""Logging set-up shared by the command-line tools."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path


def setup_logging(log_dir: Path | None = None, name: str = "log") -> None:
    """Logs to stderr and, when ``log_dir`` is given, to ``log_dir/<name>-<time>.log`` (rank-suffixed)."""
    rank = int(os.environ.get("RANK", "0"))
    fmt = (
        f"%(asctime)s %(levelname)s [%(module)s:%(lineno)d]{' rank ' + str(rank) if rank else ''} %(message)s"
    )
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
        handlers.append(
            logging.FileHandler(log_dir / f"{name}-{stamp}{'-rank' + str(rank) if rank else ''}.log")
        )
    logging.basicConfig(level=logging.INFO, format=fmt, handlers=handlers, force=True)
