"""docs/usage.md keeps up with the code: every metrics.csv column, every command and every
train option is explained."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from trustpg.app.cli import USAGE
from trustpg.config.train_config import TrainConfig
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


def test_every_train_option_is_named_in_the_usage_guide():
    """A new TrainConfig field needs a word in docs/usage.md, as its flag or its field name."""
    text = USAGE_MD.read_text()

    def named(field: str) -> bool:
        flag = field.replace("_", "-")
        return any(form in text for form in (f"--{flag}", f"--no-{flag}", f"`{field}`", f"{field}="))

    missing = [f.name for f in dataclasses.fields(TrainConfig) if not named(f.name)]
    assert missing == [], f"docs/usage.md says nothing of {missing}"
