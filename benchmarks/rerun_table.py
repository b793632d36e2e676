"""Per-seed final evaluations of a rerun next to the runs it repeats, as a Markdown table.

    python benchmarks/rerun_table.py bench-runs/rerun-52a98d3 bench-runs/mujoco Hopper-v5 HalfCheetah-v5
    python benchmarks/rerun_table.py bench-runs/mujoco-v5/3112b059d0db bench-runs/mujoco Walker2d-v5 \
        --rerun-variant preset
    python benchmarks/rerun_table.py bench-runs/mujoco-v5/d319f7522c85 bench-runs/mujoco-v5/3112b059d0db \
        Hopper-v5 --algo npg --before-algo trpo --rerun-variant preset --before-variant preset

Reads ``<root>/<env>/<algo>[/<variant>]/s<seed>/summary.json`` (eval_mean) of both roots; prints one
row per env with the seeds both have, the mean ± std of each, whether the rerun's mean lies within
the earlier runs' spread (mean ± 1 std, column "within"), Welch's t-test p-value of the difference,
and where the two runs of one seed part: the env step at which their training returns first differ
by more than 1 % (median and range over seeds). Runs of the same config whose code differs only in
floating-point rounding agree at first and part within a few updates; from there on each seed is
an independent draw, so a difference in means is judged against the spread, not seed by seed.

``--before-algo`` compares two algorithms seed by seed (NPG against TRPO: the same step
β = sqrt(2δ/g̃ᵀFg̃), TRPO adding a line search); the last column counts, per seed, the updates of
the earlier runs whose line search backtracked (``backtracks`` > 0; "–" without that column) and,
in brackets, the env step of the first of them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from suite_index import curve, read_rows  # type: ignore[import-not-found]  # benchmarks/
from suite_index import fmt_return as _n  # type: ignore[import-not-found]


def finals(root: Path) -> dict[int, float]:
    """seed → deterministic final evaluation of the runs ``root/s<seed>``."""
    out = {}
    for summary in sorted(root.glob("s*/summary.json")):
        value = json.loads(summary.read_text()).get("eval_mean")
        if value is not None:
            out[int(summary.parent.name[1:])] = float(value)
    return out


def parting_step(a: Path, b: Path, tolerance: float = 0.01) -> float:
    """The env step at which the training returns of two runs first differ by more than
    ``tolerance`` (relative, floor 1); inf if they never do."""
    (xa, ya), (xb, yb) = curve(read_rows(a)), curve(read_rows(b))
    other = dict(zip(xb, yb))
    for x, u in zip(xa, ya):
        v = other.get(x, math.nan)  # no return yet in b at this step: they already differ
        if not abs(u - v) <= tolerance * max(abs(u), 1.0):
            return x
    return math.inf


def backtracking_updates(run: Path) -> tuple[float, float]:
    """(updates of ``run`` whose line search backtracked at least once, env step of the first of
    them: inf if none); (nan, nan) without the column."""
    rows = read_rows(run)
    counts = [r.get("backtracks", math.nan) for r in rows]
    if all(math.isnan(c) for c in counts):
        return math.nan, math.nan
    first = next((r["env_steps"] for r, c in zip(rows, counts) if c > 0), math.inf)
    return float(sum(c > 0 for c in counts)), first


def _steps(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:,.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rerun", type=Path)
    p.add_argument("before", type=Path)
    p.add_argument("envs", nargs="+")
    p.add_argument("--algo", default="trpo")
    p.add_argument("--before-algo", default=None, help="the earlier runs' algo (default: --algo)")
    p.add_argument("--rerun-variant", default="", help="variant directory under <algo> (e.g. preset)")
    p.add_argument("--before-variant", default="")
    args = p.parse_args()
    from scipy import stats  # with the bench extra (rliable)

    head = "| env | seeds | before (per seed) | rerun (per seed) | before mean ± std | rerun mean ± std"
    tail = " | within | Welch p | runs of a seed part at (median, range)"
    tail += " | backtracking updates (before, per seed; the first at env step) |"
    print(head + tail + "\n" + "|---" * 10 + "|")
    for env in args.envs:
        new_dir = args.rerun / env / args.algo / args.rerun_variant
        old_dir = args.before / env / (args.before_algo or args.algo) / args.before_variant
        new, old = finals(new_dir), finals(old_dir)
        seeds = sorted(set(new) & set(old))
        if not seeds:
            continue
        a, b = [old[s] for s in seeds], [new[s] for s in seeds]
        sd = statistics.pstdev(a)
        within = abs(statistics.mean(b) - statistics.mean(a)) <= sd
        welch = stats.ttest_ind(a, b, equal_var=False).pvalue if len(seeds) > 1 else math.nan
        parts = sorted(parting_step(old_dir / f"s{s}", new_dir / f"s{s}") for s in seeds)
        backtracking = [backtracking_updates(old_dir / f"s{s}") for s in seeds]
        bt = " / ".join("–" if math.isnan(c) else f"{c:.0f}" + ("" if c == 0 else f" ({x:,.0f})")
                        for c, x in backtracking)  # fmt: skip
        print(
            f"| {env} | {','.join(map(str, seeds))} | {' / '.join(_n(x) for x in a)} | "
            f"{' / '.join(_n(x) for x in b)} | {_n(statistics.mean(a))} ± {_n(sd)} | "
            f"{_n(statistics.mean(b))} ± {_n(statistics.pstdev(b))} | {'yes' if within else 'no'} | "
            f"{welch:.2f} | {_steps(statistics.median(parts))} ({_steps(parts[0])}–{_steps(parts[-1])}) | "
            f"{bt} |"
        )


if __name__ == "__main__":
    main()
