"""docs/usage.md keeps up with the code: every metrics.csv column and every command is explained."""

from __future__ import annotations

import re
from pathlib import Path

from trustpg.app.cli import USAGE
from trustpg.io.logger import COLUMNS

USAGE_MD = Path(__file__).resolve().parents[2] / "docs" / "usage.md"


def test_every_metrics_column_has_a_row_in_the_table():
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", USAGE_MD.read_text(), flags=re.M))
    missing = [c for c in COLUMNS if c not in documented]
    assert not missing, f"docs/usage.md does not explain metrics.csv column(s) {missing}"


def test_every_command_has_a_section():
    text = USAGE_MD.read_text()
    commands = re.findall(r"^  (\w+) ", USAGE, flags=re.M)
    assert {"train", "eval", "plot", "compare"} <= set(commands)
    for command in commands:
        assert f"### `trustpg {command}`" in text, command


def test_figures_referenced_by_the_docs_exist():
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", USAGE_MD.read_text()):
        assert (USAGE_MD.parent / target).is_file(), target
