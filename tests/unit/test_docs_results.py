"""Tables of results in the docs are copies of the files the commands wrote, never typed by hand:
between ``<!-- results: PATH -->`` and ``<!-- end results -->`` stands PATH's text, unedited."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- results: (\S+) -->\n(.*?)<!-- end results -->", re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/usage.md", "docs/theory.md"])
def test_result_tables_are_the_files_the_commands_wrote(doc):
    for path, copied in MARKED.findall((ROOT / doc).read_text()):
        source = ROOT / path
        assert source.is_file(), f"{doc} copies {path}, which is not in the repository"
        assert copied == source.read_text(), f"{doc}: the table from {path} was edited or is stale"


def test_the_usage_page_has_its_comparison_table():
    assert MARKED.search((ROOT / "docs/usage.md").read_text())
