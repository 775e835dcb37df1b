"""`agegender compare`: evaluation reports side by side (see evaluation.compare)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare", help="compare evaluation reports: every overall and group figure, side by "
                        "side, the better value marked")
    compare.add_argument("reports", nargs="+", type=Path, metavar="REPORT_DIR",
                         help="folders written by `agegender evaluate --report`")
    compare.add_argument("--output", type=Path, required=True,
                         help="folder for compare.html and compare.csv")


def run(args: argparse.Namespace) -> int:
    from agegender.evaluation.compare import write_comparison

    for path in write_comparison(args.reports, args.output):
        print(path)
    return 0
