"""The seed's questions as runnable experiments: ``trustpg experiment NAME [--out DIR]``."""

from __future__ import annotations

import argparse
from pathlib import Path

EXPERIMENTS: dict[str, str] = {}


def run_experiment(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="trustpg experiment")
    p.add_argument("name", choices=sorted(EXPERIMENTS) or ["none"])
    p.add_argument("--out", type=Path, default=Path("experiments"))
    p.parse_args(argv)
    raise ValueError("no experiments are available yet")
