"""`agegender compare`: evaluation reports side by side (see evaluation.compare)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("agegender")


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]
               ) -> None:
    compare = commands.add_parser(
        "compare", parents=parents,
        help="compare evaluation reports: every overall and group figure, side by side, the "
             "better value marked",
        description="Evaluation reports side by side, each with what it measured (data, "
                    "split, images, model); a warning when they measured different data, "
                    "splits or numbers of images.")
    compare.add_argument("reports", nargs="+", type=Path, metavar="REPORT_DIR",
                         help="folders written by `agegender evaluate --report`")
    compare.add_argument("--output", type=Path, required=True,
                         help="folder for compare.html and compare.csv")


def run(args: argparse.Namespace) -> int:
    from agegender.evaluation.compare import write_comparison

    page, table, warnings = write_comparison(args.reports, args.output)
    for warning in warnings:
        log.warning("%s", warning)
    print(page)
    print(table)
    return 0
