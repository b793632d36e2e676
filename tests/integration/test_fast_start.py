"""``trustpg --help``, every command's ``--help``, ``--version`` and a bad option answer without
importing torch or gymnasium (issue 22: they took 2-6 s, all of it importing torch), and a bad
option is one line on stderr with exit status 2 for every command."""

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


COMMANDS = ("train", "tune", "eval", "plot", "compare", "experiment")


@pytest.mark.parametrize(
    "args", [["--help"], *([c, "--help"] for c in COMMANDS), ["--version"], ["train", "--seeds", "x"]]
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


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "runs/x", "--episodes", "many"],
        ["eval"],
        ["plot"],
        ["plot", "runs/x", "--bogus"],
        ["compare", "--seeds", "x"],
        ["experiment"],
        ["experiment", "bernoulli", "--bogus"],
        ["tune", "--bogus"],
        ["train", "--max-kl", "abc"],
    ],
)
def test_a_bad_option_is_one_line_and_status_2(args):
    """argparse's default prints the whole usage block before the error; every command here
    answers in one line naming the option, and before importing anything heavy."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout.splitlines()[-1])
    lines = done.stderr.strip().splitlines()
    assert report["status"] == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("trustpg: error: "), done.stderr
    helper = "train" if args[0] == "tune" else args[0]  # tune passes unknown options to train
    assert f"(see trustpg {helper} --help)" in lines[0] and "---" not in lines[0]
    assert report["heavy"] == []


def test_console_script_version():
    done = subprocess.run([sys.executable, "-m", "trustpg", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("trustpg ")
