"""``trustpg experiment curvature`` takes its env list, variants, seeds and steps as options,
reuses finished runs, and the other experiments refuse those options."""

from __future__ import annotations

import json

from trustpg.app.cli import main


def test_options_choose_the_runs_and_finished_runs_are_reused(tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["experiment", "curvature", "--out", str(out), "--smoke", "--envs", "CartPole-v1",
            "--variants", "diagonal,kfac-maxkl", "--seeds", "3", "--steps", "512"]  # fmt: skip
    assert main(argv) == 0
    runs = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*/s*"))
    assert runs == ["CartPole-v1/diagonal/s3", "CartPole-v1/kfac-maxkl/s3"]
    ev = json.loads((out / "CartPole-v1/diagonal/s3/eval.json").read_text())
    assert {"mean", "returns", "source", "stopped"} <= set(ev)
    table = (out / "results.md").read_text()
    assert "| CartPole-v1 | diagonal | 1 | 512 |" in table
    stamp = (out / "CartPole-v1/diagonal/s3/eval.json").stat().st_mtime_ns
    assert main(argv) == 0  # finished: not trained again
    assert (out / "CartPole-v1/diagonal/s3/eval.json").stat().st_mtime_ns == stamp
    capsys.readouterr()


def test_other_experiments_refuse_the_options(tmp_path, capsys):
    assert main(["experiment", "angle", "--out", str(tmp_path), "--smoke", "--seeds", "1"]) == 2
    assert "takes no" in capsys.readouterr().err
