"""docs/usage.md keeps up with the code: every metrics.csv column and every command is explained."""

from __future__ import annotations

import re
from pathlib import Path

from trustpg.app.cli import USAGE
from trustpg.io.record import markdown_table, table_in

USAGE_MD = Path(__file__).resolve().parents[2] / "docs" / "usage.md"


def test_the_metrics_table_is_generated_from_the_update_record():
    table = table_in(USAGE_MD.read_text())
    assert table is not None, "docs/usage.md lost its metrics-table markers"
    assert table == markdown_table(), "regenerate it: python -m trustpg.io.record docs/usage.md"


def test_every_command_has_a_section():
    text = USAGE_MD.read_text()
    commands = re.findall(r"^  (\w+) ", USAGE, flags=re.M)
    assert {"train", "eval", "plot", "compare"} <= set(commands)
    for command in commands:
        assert f"### `trustpg {command}`" in text, command


def test_figures_referenced_by_the_docs_exist():
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", USAGE_MD.read_text()):
        assert (USAGE_MD.parent / target).is_file(), target
