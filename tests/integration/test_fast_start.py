"""``trustpg --help``, ``train --help``, ``tune --help`` and ``--version`` answer without importing
torch or gymnasium (issue 22: they took 2-6 s, all of it importing torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, json, sys
from trustpg.app.cli import main
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        status = main(sys.argv[1:])
except SystemExit as e:
    status = e.code
heavy = [m for m in ("torch", "gymnasium", "optuna", "matplotlib") if m in sys.modules]
print(json.dumps({"status": status, "heavy": heavy, "out": out.getvalue()}))
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["train", "--help"], ["tune", "--help"], ["--version"], ["train", "--seeds", "x"]]
)
def test_help_and_version_import_no_torch(args):
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["heavy"] == []
    if args == ["--version"]:
        from trustpg import __version__

        assert report["status"] == 0 and report["out"] == f"trustpg {__version__}\n"
    elif args[-1] == "--help":
        assert report["status"] in (0, None) and "usage" in report["out"]
    else:  # a bad --seeds value is reported before anything heavy is imported
        assert report["status"] == 2 and "--seeds 'x' is not an integer" in done.stderr


def test_console_script_version():
    done = subprocess.run([sys.executable, "-m", "trustpg", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("trustpg ")
