"""The ``ultradet`` command (installed with the package, ``[project.scripts]``):
``ultradet predict MODEL CLIP --out DIR`` (:mod:`ultradet.predict.cli`)."""

from __future__ import annotations

import argparse
from typing import Sequence

from ultradet.predict import cli as predict_cli


def main(argv: Sequence[str] | None = None) -> int:
    """``ultradet <command> ...``: the command's exit status (1 and one line on a user error)."""
    parser = argparse.ArgumentParser(prog="ultradet", description="UltraDet: real-time lesion detection in ultrasound video.")
    parser.add_argument("command", choices=["predict"], help="predict: run a trained detector over a clip")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments (ultradet <command> --help)")
    args = parser.parse_args(argv)
    return predict_cli.run(args.args, prog=f"ultradet {args.command}")
