"""``trustpg plot`` and compare's table group runs by config, say where they cut a line, and colour a
group the same whatever the order of the runs (fake run directories: config.json + metrics.csv)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from trustpg.app.cli import main
from trustpg.app.compare import summary_table
from trustpg.io.plotting import colours, curves, draw, group_runs, load_config


def fake_run(root: Path, name: str, points: int, seed: int = 0, **config) -> Path:
    """A run directory with ``points`` rows, 100 env steps apart, returns seed + row index."""
    run = root / name
    run.mkdir(parents=True)
    cfg = {"env": "A-v0", "algo": "trpo", "seed": seed, **config}
    (run / "config.json").write_text(json.dumps(cfg))
    lines = ["update,env_steps,wall_time,mean_return"]
    lines += [f"{i + 1},{(i + 1) * 100},{i + 1.0},{seed + i}" for i in range(points)]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def test_runs_with_different_configs_are_two_lines_labelled_by_the_difference(tmp_path):
    runs = [
        fake_run(tmp_path, "a0", 5, seed=0, max_kl=0.01),
        fake_run(tmp_path, "a1", 5, seed=1, max_kl=0.01, progress=False, torch_threads=2),
        fake_run(tmp_path, "b0", 5, seed=0, max_kl=0.02),
        fake_run(tmp_path, "v0", 5, algo="vpg"),
        fake_run(tmp_path, "v1", 5, seed=1, algo="vpg", max_kl=0.05),  # VPG reads no max_kl
        fake_run(tmp_path, "k0", 5, algo="vpg", env_kwargs='{"sutton_barto_reward": true}'),
        # nor the natural gradient's back end and the line search's distance
        fake_run(
            tmp_path,
            "v2",
            5,
            seed=2,
            algo="vpg",
            curvature="kfac",
            kfac_decay=0.5,
            pcg_iters=3,
            ng_angle_states=1024,
            kl="max",
        ),
        fake_run(tmp_path, "n0", 5, algo="npg", kl="mean"),
        fake_run(tmp_path, "n1", 5, seed=1, algo="npg", kl="max"),  # NPG has no line search
    ]
    lines = curves(runs, note=lambda _: None)
    labels = {g.label: c.n for g, c in lines.items()}
    # seed, display/speed settings and fields the algorithm ignores do not split a group;
    # max_kl (for TRPO) and env_kwargs do
    assert labels == {
        "TRPO max_kl=0.01": 2,
        "TRPO max_kl=0.02": 1,
        "VPG env_kwargs={}": 3,
        "NPG": 2,
        'VPG env_kwargs={"sutton_barto_reward": true}': 1,
    }
    fig = draw(lines, "env_steps", "mean_return")
    assert len(fig.axes[0].get_lines()) == 5


def test_a_line_is_cut_where_its_shortest_run_ends_and_a_note_says_so(tmp_path, capsys):
    fake_run(tmp_path, "s0", 3, seed=0)
    fake_run(tmp_path, "s1", 5, seed=1)
    fake_run(tmp_path, "s2", 4, seed=2)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "note: A-v0 TRPO (n=3) cut at 300 env_steps, the shortest of its runs (longest 500)" in out
    (line,) = curves([tmp_path], note=lambda _: None).values()
    assert line.grid[-1] == 300 and line.cut
    fake_run(tmp_path / "even", "e0", 3, seed=0)
    fake_run(tmp_path / "even", "e1", 3, seed=1)
    assert main(["plot", str(tmp_path / "even"), "--out", str(tmp_path / "e.png")]) == 0
    assert "note" not in capsys.readouterr().out  # nothing cut, nothing said


def test_a_run_with_too_few_points_is_left_out_with_a_note(tmp_path, capsys):
    fake_run(tmp_path, "s0", 3, seed=0)
    fake_run(tmp_path, "s1", 1, seed=1)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "c.png")]) == 0
    assert "left out 1 run(s) with fewer than 2 points" in capsys.readouterr().out


def test_a_group_keeps_its_colour_whatever_the_order_of_the_runs(tmp_path):
    runs = [fake_run(tmp_path, f"r{i}", 4, seed=i % 2, max_kl=0.01 * (1 + i // 2)) for i in range(8)]
    runs.append(fake_run(tmp_path, "vpg", 4, algo="vpg"))

    def drawn(order):
        fig = draw(curves(order, note=lambda _: None), "env_steps", "mean_return")
        return {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}

    first = drawn(runs)
    shuffled = runs[:]
    random.Random(0).shuffle(shuffled)
    assert drawn(list(reversed(runs))) == first == drawn(shuffled)
    assert len(set(first.values())) == len(first) == 5  # distinct colours within a panel
    assert first["VPG (n=1)"] == "tab:blue"  # an algorithm's only line has its fixed colour
    # the same group in another invocation with another panel beside it: the same colour
    other = fake_run(tmp_path / "B", "b", 4, env="B-v0")
    assert colours(group_runs([*runs[:2], other])) == colours(group_runs([other, *runs[1::-1]]))


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    run = fake_run(tmp_path, "r", 3)
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert main(["plot", str(run), "--y", "no_such_column"]) == 2
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    assert main(["plot", str(tmp_path / "junk")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(e.startswith("trustpg: error: ") for e in err)
    assert "no column 'no_such_column'" in err[1]


def test_older_config_files_count_missing_fields_as_defaults(tmp_path):
    old = fake_run(tmp_path, "old", 3)
    new = fake_run(tmp_path, "new", 3, seed=1, max_kl=0.01, max_kl_final=None)
    assert load_config(old)["max_kl"] == 0.01
    assert list(group_runs([old, new]).values()) == [[old, new]]


def test_summary_table_has_a_row_per_config_and_marks_incomplete_groups(tmp_path):
    runs = [fake_run(tmp_path, f"a{s}", 3, seed=s) for s in range(3)]
    runs.append(fake_run(tmp_path, "b0", 3, max_kl=0.02))
    for run in runs[:2] + runs[3:]:
        (run / "summary.json").write_text(json.dumps({"eval_mean": 10.0}))
    table = summary_table({r: load_config(r) for r in runs})
    assert "| A-v0 | TRPO max_kl=0.01 | incomplete: 2 of 3 finished | 10.0 ± 0.0 | 300 |" in table
    assert "| A-v0 | TRPO max_kl=0.02 | 1 | 10.0 ± 0.0 | 300 |" in table
    (runs[2] / "summary.json").write_text(json.dumps({"eval_interrupted": True}))
    assert "incomplete: 2 of 3 finished" in summary_table({r: load_config(r) for r in runs})
