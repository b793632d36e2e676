"""Per-seed final evaluations of a rerun next to the runs it repeats, as a Markdown table.

    python benchmarks/rerun_table.py bench-runs/rerun-52a98d3 bench-runs/mujoco Hopper-v5 HalfCheetah-v5

Reads ``<root>/<env>/<algo>/s<seed>/summary.json`` (eval_mean) of both roots; prints one row per env
with the seeds both have, the mean ± std of each, the largest per-seed difference and whether the
rerun's mean lies within the earlier runs' spread (mean ± 1 std, column "within").
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def finals(root: Path, env: str, algo: str) -> dict[int, float]:
    out = {}
    for summary in sorted((root / env / algo).glob("s*/summary.json")):
        value = json.loads(summary.read_text()).get("eval_mean")
        if value is not None:
            out[int(summary.parent.name[1:])] = float(value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rerun", type=Path)
    p.add_argument("before", type=Path)
    p.add_argument("envs", nargs="+")
    p.add_argument("--algo", default="trpo")
    args = p.parse_args()
    head = "| env | seeds | before (per seed) | rerun (per seed) | before mean ± std | rerun mean ± std"
    print(head + " | within |\n" + "|---" * 7 + "|")
    for env in args.envs:
        new, old = finals(args.rerun, env, args.algo), finals(args.before, env, args.algo)
        seeds = sorted(set(new) & set(old))
        if not seeds:
            continue
        a, b = [old[s] for s in seeds], [new[s] for s in seeds]
        sd = statistics.pstdev(a)
        within = abs(statistics.mean(b) - statistics.mean(a)) <= sd
        print(
            f"| {env} | {','.join(map(str, seeds))} | {' / '.join(f'{x:,.0f}' for x in a)} | "
            f"{' / '.join(f'{x:,.0f}' for x in b)} | {statistics.mean(a):,.0f} ± {sd:,.0f} | "
            f"{statistics.mean(b):,.0f} ± {statistics.pstdev(b):,.0f} | {'yes' if within else 'no'} |"
        )


if __name__ == "__main__":
    main()
