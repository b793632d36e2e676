"""The MinAtar section's comparison with the paper (benchmarks/pomdp_report.py): TRPO's training
return at the end of 5M-frame preset runs against the paper's DQN, per seed; other runs left out."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import pomdp_report


def _run(root: Path, rel: str, seed: int, late: float, steps: int = 5_000_000) -> dict[str, object]:
    run = root / rel
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"steps": steps}))
    # Nine tenths of the run at return 1, then two episodes at ``late`` in the last tenth.
    csv = f"update,env_steps,episodes,mean_return\n1,{steps * 9 // 10},5,1.0\n2,{steps},7,{late}\n"
    (run / "metrics.csv.gz").write_bytes(gzip.compress(csv.encode()))
    return {"path": rel, "seed": seed, "eval_mean": late + 1.0}


def test_paper_table_counts_the_seeds_above_dqn_on_the_same_measure(tmp_path):
    env = "MinAtar/Freeway-v0"  # DQN ≈ 50.5
    runs = [_run(tmp_path, f"m/c/{env}/preset/s{s}", s, late) for s, late in enumerate((61.0, 60.0, 31.0))]
    short = [_run(tmp_path, f"m/c/{env}/short/s0", 0, 70.0, steps=500_000)]
    gs = {(env, "preset", "c" * 12): runs, (env, "preset", "d" * 12): short,
          (env, "policy=mlp", "c" * 12): runs}  # fmt: skip
    lines = pomdp_report.paper_table(gs, tmp_path, pomdp_report.late_returns(gs, tmp_path))
    assert len(lines) == 3  # header, rule, the one 5M-frame preset row
    row = lines[2]
    assert "| 50.5 |" in row and "50.7 (61.0, 60.0, 31.0)" in row and "51.7 (62.0, 61.0, 32.0)" in row
    assert row.endswith("| 2 of 3 |")


def test_paper_table_is_empty_without_runs_on_the_papers_games(tmp_path):
    runs = [_run(tmp_path, "m/c/MinAtar/Breakout-v1/preset/s0", 0, 5.0)]
    gs = {("MinAtar/Breakout-v1", "preset", "c" * 12): runs}
    assert pomdp_report.paper_table(gs, tmp_path, pomdp_report.late_returns(gs, tmp_path)) == []
