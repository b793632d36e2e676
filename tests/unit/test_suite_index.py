"""The benchmark of record's index and headline rule (benchmarks/suite_index.py, suite_report.py):
legacy runs are never attributed, one commit per headline row, the area under the curve."""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import suite
import suite_index
import suite_report


def _run(
    root: Path,
    rel: str,
    seed: int,
    ret: float,
    commit: str | None,
    dirty: bool = False,
    cpu: str = "x",
    features: str | None = None,
) -> Path:
    run = root / rel
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"env": "Hopper-v5", "algo": "trpo", "seed": seed}))
    (run / "summary.json").write_text(json.dumps({"env_steps": 300, "eval_mean": ret, "train_seconds": 3.0}))
    csv = "update,env_steps,mean_return,wall_time\n1,100,0.0,1.0\n2,200,,2.0\n3,300,30.0,3.0\n"
    (run / "metrics.csv.gz").write_bytes(gzip.compress(csv.encode()))
    if commit is not None:
        session = {"commit": commit, "dirty": dirty, "started": f"2026-12-02T10:0{seed}:00+00:00",
                   "machine": {"cpu": cpu} | ({"cpu_features": features} if features else {}),
                   "software": {}, "command": "c", "config_hash": "h"}  # fmt: skip
        manifest = {"sessions": [session], "commit": commit, "clean": not dirty}
        (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_area_under_the_curve_carries_the_last_return_over_updates_without_episodes():
    xs, ys = suite_index.curve([{"env_steps": 100, "mean_return": 0.0},
                                {"env_steps": 200, "mean_return": math.nan},
                                {"env_steps": 300, "mean_return": 30.0}])  # fmt: skip
    assert (xs, ys) == ([100, 200, 300], [0.0, 0.0, 30.0])
    assert suite_index.area_under_curve(xs, ys) == pytest.approx((0 + 15 * 100) / 200)


def test_late_training_return_weights_each_update_by_the_episodes_it_ended():
    # 1,000 steps: the last 10 % are the updates after step 900. Episodes is a running count.
    rows = [{"env_steps": 300, "episodes": 4, "mean_return": 1.0},
            {"env_steps": 600, "episodes": 9, "mean_return": 2.0},
            {"env_steps": 900, "episodes": 9, "mean_return": math.nan},  # no episode: not counted
            {"env_steps": 950, "episodes": 12, "mean_return": 10.0},  # 3 episodes
            {"env_steps": 1000, "episodes": 13, "mean_return": 30.0}]  # 1 episode  # fmt: skip
    assert suite_index.late_training_return(rows) == pytest.approx((3 * 10.0 + 1 * 30.0) / 4)
    # Half the run: updates after step 500, the first of them ended 5 episodes at 2.0.
    assert suite_index.late_training_return(rows, 0.5) == pytest.approx((5 * 2 + 30 + 30) / 9)
    assert math.isnan(suite_index.late_training_return(rows[:3], 0.2))  # last updates ended none
    assert math.isnan(suite_index.late_training_return([]))


def test_index_attributes_only_committed_suite_runs_and_headlines_one_commit(tmp_path):
    for seed, ret in enumerate([100.0, 110.0, 120.0]):
        _run(tmp_path, f"mujoco-v5/aaaa/Hopper-v5/trpo/preset/s{seed}", seed, ret, "a" * 40)
    _run(tmp_path, "mujoco-v5/bbbb/Hopper-v5/trpo/preset/s0", 0, 9999.0, "b" * 40)  # fewer seeds
    _run(tmp_path, "mujoco-v5/cccc/Hopper-v5/trpo/preset/s1", 1, 9999.0, "c" * 40, dirty=True)
    _run(tmp_path, "mujoco/Hopper-v5/trpo/s0", 0, 9999.0, None)  # legacy: no manifest
    index = suite_index.build_index(tmp_path)
    by_path = {e["path"]: e for e in index}
    assert not by_path["mujoco/Hopper-v5/trpo/s0"]["attributed"]
    assert by_path["mujoco/Hopper-v5/trpo/s0"]["layout"] == "legacy"
    assert not by_path["mujoco-v5/cccc/Hopper-v5/trpo/preset/s1"]["attributed"]
    assert by_path["mujoco-v5/aaaa/Hopper-v5/trpo/preset/s0"]["auc"] == pytest.approx(7.5)
    groups = suite_report.headline_groups(index)
    assert list(groups) == [("mujoco-v5", "Hopper-v5", "trpo")]
    row = groups[("mujoco-v5", "Hopper-v5", "trpo")]
    assert [r["eval_mean"] for r in row] == [100.0, 110.0, 120.0]  # commit a: most seeds, nothing mixed in


def test_a_headline_row_names_the_cpu_models_its_runs_ran_on(tmp_path):
    """The same commit and seed on two CPU models part at the first update, so a row says which
    machines its seeds ran on."""
    cpus = ["Intel(R) Xeon(R) Processor", "Intel(R) Xeon(R) Processor", "AMD EPYC"]
    for seed, cpu in enumerate(cpus):
        _run(tmp_path, f"mujoco-v5/aaaa/Hopper-v5/trpo/preset/s{seed}", seed, 100.0 + seed, "a" * 40, cpu=cpu)
    groups = suite_report.headline_groups(suite_index.build_index(tmp_path))
    header, _, row, *_ = suite_report.tables(groups, reps=200)
    assert header.rstrip(" |").endswith("| CPU")
    assert row.endswith("| Intel Xeon ×2, AMD EPYC ×1 |")
    assert len(row.split(" | ")) == len(header.split(" | "))


def test_a_headline_row_names_the_cpu_features_where_its_runs_recorded_them(tmp_path):
    """Two hosts called "AMD EPYC" rounded one Walker2d run differently (docs/reliability.md): a
    row names the features its manifests recorded, and runs from before they were recorded apart."""
    features = [None, "AVX2, flags ecfefe0f", "AVX2, flags ecfefe0f", "AVX512, flags 0a1b2c3d"]
    for seed, f in enumerate(features):
        _run(
            tmp_path,
            f"mujoco-v5/aaaa/Hopper-v5/trpo/preset/s{seed}",
            seed,
            100.0,
            "a" * 40,
            cpu="AMD EPYC",
            features=f,
        )
    groups = suite_report.headline_groups(suite_index.build_index(tmp_path))
    _, _, row, *_ = suite_report.tables(groups, reps=200)
    assert row.endswith(
        "| AMD EPYC (AVX2, flags ecfefe0f) ×2, AMD EPYC ×1, AMD EPYC (AVX512, flags 0a1b2c3d) ×1 |"
    )


def test_a_row_trained_on_cut_episodes_says_so_next_to_its_area_under_the_curve(tmp_path):
    """train_time_limit: the training curve is of cut episodes; the AUC cell must say it."""
    for seed in range(2):
        run = _run(tmp_path, f"mujoco-v5/aaaa/Hopper-v5/trpo/preset/s{seed}", seed, 100.0, "a" * 40)
        (run / "config.json").write_text(
            json.dumps({"env": "Hopper-v5", "algo": "trpo", "seed": seed, "train_time_limit": 200})
        )
    groups = suite_report.headline_groups(suite_index.build_index(tmp_path))
    header, _, row, *_ = suite_report.tables(groups, reps=200)
    auc_column = header.split(" | ").index("AUC IQM [95 % CI]")
    assert row.split(" | ")[auc_column].endswith("(training episodes cut at 200 steps)")
    assert len(row.split(" | ")) == len(header.split(" | "))
    assert suite_report.cut_at([{"train_time_limit": None}]) == ""


def test_variant_names_are_the_differences_from_the_preset():
    assert suite.variant_name("Hopper-v5", {}) == "preset"
    assert suite.variant_name("Hopper-v5", suite.parse_sets(["gamma=0.995"])) == "preset"  # the preset's own
    name = suite.variant_name("Hopper-v5", suite.parse_sets(["normalize_obs=false", "hidden_sizes=[32,32]"]))
    assert name == "hidden_sizes=[32,32],normalize_obs=false"
    assert suite.seeds("0-2,7") == [0, 1, 2, 7]


def test_a_peer_trains_on_the_env_the_preset_makes_and_takes_no_other_setting():
    """sb3-contrib on Ant-v5 sees trustpg's observation (no contact forces, as in v2-v4 where RL
    Zoo's settings were tuned) unless --set env_kwargs says otherwise; its variant name says so."""
    assert suite.peer_env_kwargs("mujoco", "Ant-v5", {}) == {"include_cfrc_ext_in_observation": False}
    assert suite.peer_env_kwargs("mujoco", "Hopper-v5", {}) == {}
    default_obs = suite.parse_sets(["env_kwargs={}"])
    assert default_obs == {"env_kwargs": "{}"}  # JSON text stays text, as TrainConfig holds it
    assert suite.peer_env_kwargs("mujoco", "Ant-v5", default_obs) == {}
    assert suite.variant_name("Ant-v5", default_obs) == "env_kwargs={}"
    assert suite.variant_name("Ant-v5", {}) == "preset"
    with pytest.raises(SystemExit, match="max_kl: a peer has its own settings"):
        suite.peer_env_kwargs("mujoco", "Ant-v5", {"max_kl": 0.02})


def test_other_suites_start_from_their_preset_and_keep_out_of_the_mujoco_report(tmp_path):
    assert (
        suite.variant_name("trustpg/CartPoleNoVel-v1", suite.parse_sets(["policy=gru"]), "classic")
        == "policy=gru"
    )
    # Pendulum's classic preset sets gamma 0.9: the same value is no variant, another one is.
    assert suite.variant_name("trustpg/PendulumNoVel-v1", {"gamma": 0.9}, "classic") == "preset"
    assert suite.variant_name("trustpg/PendulumNoVel-v1", {"gamma": 0.99}, "classic") == "gamma=0.99"
    run = suite.run_dir("pomdp", "abc", "trustpg/CartPoleNoVel-v1", "trpo", "preset", 0)
    assert run.parts[-4] == "trustpg_CartPoleNoVel-v1"  # one directory, as the index's layout expects
    entry = {"layout": "suite", "attributed": True, "finished": True, "variant": "preset", "eval_mean": 1.0,
             "suite": "pomdp", "env": "trustpg/CartPoleNoVel-v1", "algo": "trpo", "commit": "abc", "seed": 0,
             "started": "x"}  # fmt: skip
    assert suite_report.headline_groups([entry]) == {}


def test_rerun_table_finds_where_the_runs_of_a_seed_part(tmp_path):
    import rerun_table

    def run(name: str, returns: list[str]) -> Path:
        d = tmp_path / name
        d.mkdir()
        rows = "".join(f"{i + 1},{100 * (i + 1)},{r}\n" for i, r in enumerate(returns))
        (d / "metrics.csv").write_text("update,env_steps,mean_return\n" + rows)
        return d

    a = run("a", ["10.0", "20.0", "", "40.0", "50.0"])
    b = run("b", ["10.0000001", "20.1", "", "40.0", "90.0"])  # 0.5 % at step 200: within 1 %
    assert rerun_table.parting_step(a, b) == 500
    assert rerun_table.parting_step(a, b, tolerance=0.001) == 200
    assert rerun_table.parting_step(a, a) == math.inf


def test_rerun_table_counts_the_updates_whose_line_search_backtracked(tmp_path):
    import rerun_table

    (tmp_path / "trpo").mkdir()
    rows = "".join(f"{i + 1},{100 * (i + 1)},1.0,{k}\n" for i, k in enumerate(["0", "2", "", "1", "0"]))
    (tmp_path / "trpo" / "metrics.csv").write_text("update,env_steps,mean_return,backtracks\n" + rows)
    assert rerun_table.backtracking_updates(tmp_path / "trpo") == (2, 200)
    (tmp_path / "npg").mkdir()  # a log without backtrack counts (empty cells)
    (tmp_path / "npg" / "metrics.csv").write_text("update,env_steps,mean_return,backtracks\n1,100,1.0,\n")
    assert all(math.isnan(x) for x in rerun_table.backtracking_updates(tmp_path / "npg"))


def test_intervals_are_the_same_each_time_the_report_is_regenerated():
    """rliable 1.2 resamples with NumPy's global generator and ignores its random_state; the
    report seeds it, and leaves the caller's generator as it was."""
    scores = np.random.default_rng(1).normal(size=(10, 1))
    np.random.seed(7)
    first = suite_report.interval(scores, reps=2000)
    after_first = np.random.rand()
    np.random.seed(7)
    np.random.rand()  # a different global state must not change the intervals
    assert suite_report.interval(scores, reps=2000) == first
    np.random.seed(7)
    assert np.random.rand() == after_first  # the caller's stream is untouched by the report
    lo, hi = first["mean"][1], first["mean"][2]
    assert lo < scores.mean() < hi


def test_target_cell_says_when_no_published_number_was_found():
    assert suite_report._target("Hopper-v5", suite_report.TARGETS["Hopper-v5"][0]) == "3,740"
    assert suite_report._target("Pusher-v5", math.nan) == "none found"
    assert suite_report._target("Made-up-v0", math.nan) == "–"
    assert not set(suite_report.NO_TARGET) & set(suite_report.TARGETS)


def test_a_run_of_another_length_is_its_own_variant_not_done_already(tmp_path, monkeypatch):
    """A 500k-step MinAtar probe and the 5M-frame run of the same preset once shared a directory: the
    long run printed "done already" and the report would have mixed the two lengths in one row."""
    monkeypatch.setattr(suite, "RUNS", tmp_path)
    monkeypatch.setattr(suite, "commit_dir", lambda: "abc")

    def args(steps: int | None) -> argparse.Namespace:
        return argparse.Namespace(suite="minatar", envs=["MinAtar/Breakout-v0"], algos=["trpo"],
                                  seeds="0", steps=steps, set=[])  # fmt: skip

    done = suite.run_dir("minatar", "abc", "MinAtar/Breakout-v0", "trpo", "steps=500000", 0)
    done.mkdir(parents=True)
    (done / "summary.json").write_text("{}")
    assert suite.jobs_for(args(500_000)) == []  # that run is finished
    (job,) = suite.jobs_for(args(None))  # the suite's budget: the MinAtar paper's 5M frames
    config = job[1][0]
    assert config.steps == 5_000_000 and Path(config.run_dir).name == "preset"
    (job,) = suite.jobs_for(args(1_000_000))
    assert job[1][0].steps == 1_000_000 and Path(job[1][0].run_dir).name == "steps=1000000"
    assert suite.budget("pomdp", "trustpg/CartPoleNoVel-v1") == 50_000
    assert suite.budget("mujoco-v5", "Hopper-v5") == 1_000_000
    with pytest.raises(SystemExit, match="--steps 5000"):
        suite.parse_sets(["steps=5000"])  # once silently overridden by --steps


def test_the_per_seed_table_puts_the_seeds_median_episode_next_to_their_evaluations(tmp_path):
    """One failed episode in ten lowers a seed's mean, not its median: the per-seed table shows the
    mean over seeds of each seed's median episode, and says so ("–") when a run kept no episodes."""
    episodes = [[100.0] * 9 + [0.0], [200.0] * 10]  # seed 0: mean 90, median 100; seed 1: 200, 200
    for seed, returns in enumerate(episodes):
        run = _run(
            tmp_path, f"mujoco-v5/aaaa/Hopper-v5/trpo/preset/s{seed}", seed, float(np.mean(returns)), "a" * 40
        )
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "eval_returns": returns}))
    index = suite_index.build_index(tmp_path)
    assert sorted(e["eval_median"] for e in index) == [100.0, 200.0]
    lines = suite_report.tables(suite_report.headline_groups(index), reps=200)
    header = next(line for line in lines if "final evaluation per seed" in line)
    row = lines[lines.index(header) + 2]
    assert header.split(" | ")[3] == "the seeds' median episodes, mean"
    assert row.split(" | ")[3] == "150" and row.split(" | ")[4] == "s0: 90.0, s1: 200"
    no_episodes = [{**e, "eval_median": None} for e in index]
    assert suite_report.median_of_seeds(no_episodes) == "–"


def test_the_per_seed_table_gives_each_runs_training_time_and_steps_per_second(tmp_path):
    """Issue 23 asks for the wall time and steps/s of each run: each seed's, from its metrics (the
    last row's wall_time over its steps), not only the row's median."""
    for seed, wall in enumerate([90.0, 150.0]):
        run = _run(tmp_path, f"mujoco-v5/aaaa/Hopper-v5/trpo/preset/s{seed}", seed, 1.0, "a" * 40)
        csv = f"update,env_steps,mean_return,wall_time\n1,150,0.0,{wall / 2}\n2,300,30.0,{wall}\n"
        (run / "metrics.csv.gz").write_bytes(gzip.compress(csv.encode()))
    index = suite_index.build_index(tmp_path)
    lines = suite_report.tables(suite_report.headline_groups(index), reps=200)
    header = next(line for line in lines if "final evaluation per seed" in line)
    assert header.split(" | ")[5] == "training time per seed, min (steps/s) |"
    row = lines[lines.index(header) + 2]
    assert row.split(" | ")[5] == "s0: 1.5 (3), s1: 2.5 (2) |"
    assert suite_report.times_of_seeds([{"seed": 4, "train_seconds": None}]) == "s4: –"


def test_target_mark_counts_the_seeds_that_reached_the_single_published_agent_alone():
    runs = [{"eval_mean": x} for x in (5_149.0, 4_933.0, 4_400.0, 3_677.0)]
    assert suite_report.reached(runs, 4_933.0) == " ✗, 2/4 seeds ≥"  # a seed at the target counts
    assert suite_report.reached(runs, 4_000.0) == " ✓, 3/4 seeds ≥"
    assert suite_report.reached([{"eval_mean": -4.0}, {"eval_mean": -5.0}], -4.82) == " ✓, 1/2 seeds ≥"
    assert suite_report.reached(runs, math.nan) == ""
