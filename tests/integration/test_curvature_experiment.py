"""``trustpg experiment curvature`` takes its env list, variants, seeds and steps as options,
reuses finished runs, and the other experiments refuse those options."""

from __future__ import annotations

import csv
import gzip
import json
import statistics

import pytest

from trustpg.app.cli import main
from trustpg.io.logger import read_metrics


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
    assert "| CartPole-v1 | diagonal | " in table and "[s3: " in table
    assert "CartPole-v1,diagonal,1,512," in (out / "results.csv").read_text()
    stamp = (out / "CartPole-v1/diagonal/s3/eval.json").stat().st_mtime_ns
    assert main(argv) == 0  # finished: not trained again
    assert (out / "CartPole-v1/diagonal/s3/eval.json").stat().st_mtime_ns == stamp
    capsys.readouterr()


def test_other_experiments_refuse_the_options(tmp_path, capsys):
    assert main(["experiment", "angle", "--out", str(tmp_path), "--smoke", "--seeds", "1"]) == 2
    assert "takes no" in capsys.readouterr().err


def test_the_table_compares_each_variant_with_cg_on_the_seeds_both_have(tmp_path, capsys):
    out = tmp_path / "c"
    base = ["experiment", "curvature", "--out", str(out), "--smoke", "--envs", "CartPole-v1"]
    base += ["--steps", "512"]
    assert main([*base, "--variants", "cg", "--seeds", "3,4"]) == 0
    assert main([*base, "--variants", "kfac", "--seeds", "4"]) == 0
    final = {p: json.loads((out / "CartPole-v1" / p / "eval.json").read_text())["mean"]
             for p in ("cg/s3", "cg/s4", "kfac/s4")}  # fmt: skip
    lines = {line.split(" | ")[1]: line for line in (out / "results.md").read_text().splitlines()[2:]}
    assert f"[s3: {final['cg/s3']:,.0f}, s4: {final['cg/s4']:,.0f}] | – |" in lines["cg"]
    assert f"[s4: {final['kfac/s4']:,.0f}] | {final['kfac/s4'] / final['cg/s4']:.0%} |" in lines["kfac"]
    rows = read_metrics(out / "CartPole-v1/kfac/s4/metrics.csv")
    gain = statistics.median(r["surrogate_after"] - r["surrogate_before"] for r in rows if not r["skipped"])
    csv_row = next(r for r in csv.DictReader((out / "results.csv").open()) if r["variant"] == "kfac")
    assert float(csv_row["surrogate_gain"]) == pytest.approx(gain, rel=1e-5)  # the csv keeps 6 digits
    # the machine-speed witness: the runs' median rollout time, which no back end changes
    collect = statistics.median(r["collect_seconds"] for r in rows if not r["skipped"])
    assert float(csv_row["collect_s"]) == pytest.approx(collect, rel=1e-5)
    assert f"| {1e3 * collect:.1f} | " in lines["kfac"]
    table = (out / "results.md").read_text()
    for run in out.glob("CartPole-v1/*/s*"):  # compressed for the repository: the same table
        plain = run / "metrics.csv"
        (run / "metrics.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    assert main([*base, "--variants", "kfac", "--seeds", "4"]) == 0
    assert (out / "results.md").read_text() == table
    capsys.readouterr()
