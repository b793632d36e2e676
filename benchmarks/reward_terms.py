"""What a trained policy's evaluation return is made of, and what it scores on another version of
its env: the final checkpoints of runs, each played as the run's own evaluation does
(deterministic, ten episodes from seeds seed+10000+k, the env's time limit), summing each of the
env's reward terms (Gymnasium MuJoCo v5's ``info["reward_*"]``: forward, ctrl, contact, survive)
per episode.

Why (docs/benchmarks.md, "The env's version"): the published numbers trustpg's targets come from
were made on MuJoCo v3 envs, and v5 changed some of them: Walker2d-v5's right foot has the left
foot's friction (1.9, was 0.9), Ant-v5 always charges the contact cost (v3/v4 by default did not).
``--env-kwargs`` evaluates the same policies on a changed env, e.g. v4's Walker2d model
(``'{"xml_file": "walker2d.xml"}'``), so a version's share of a return can be measured.

    python benchmarks/reward_terms.py RUN_DIR [RUN_DIR ...] [--env-kwargs JSON] [--out FILE]

A run directory needs ``checkpoints/last.safetensors`` (kept by the run, not committed to git).
Without ``--env-kwargs`` the episodes are the run's own evaluation, and the table says whether
their returns match summary.json's to 1e-6 (same code and CPU model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from start_falls import env_for, transitions

from trustpg.train.agent import Agent


def episode_terms(agent: Any, env: gym.Env, seed: int) -> dict[str, float]:
    """One deterministic episode from ``env.reset(seed=seed)``: its return, length and the sum of
    each ``info["reward_*"]`` term over its steps."""
    sums: dict[str, float] = {"return": 0.0, "length": 0.0}
    for r, _, info in transitions(agent, env, seed):
        sums["return"] += r
        sums["length"] += 1
        for key, value in info.items():
            if key.startswith("reward_"):
                term = key[len("reward_") :]
                sums[term] = sums.get(term, 0.0) + float(value)
    return sums


def mean_terms(episodes: list[dict[str, float]]) -> dict[str, float]:
    """The mean over episodes of each term (a term missing from an episode counts as 0)."""
    keys = sorted({k for e in episodes for k in e})
    return {k: float(np.mean([e.get(k, 0.0) for e in episodes])) for k in keys}


def matches_summary(run: Path, returns: list[float]) -> str:
    summary = json.loads((run / "summary.json").read_text())
    recorded = summary.get("eval_returns")
    if recorded is None or len(recorded) != len(returns):
        return "–"
    return "yes" if np.allclose(returns, recorded, rtol=1e-6, atol=1e-6) else "no"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--env-kwargs", default="{}", help="JSON: env arguments over the run's own")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--out", type=Path, help="also write a JSON record there (the table, provenance)")
    args = p.parse_args()
    try:
        overrides = json.loads(args.env_kwargs)
    except json.JSONDecodeError as e:
        raise SystemExit(f'--env-kwargs: not JSON ({e}); e.g. \'{{"xml_file": "walker2d.xml"}}\'') from None
    missing = [str(r) for r in args.runs if not (r / "checkpoints" / "last.safetensors").is_file()]
    if missing:
        raise SystemExit(f"no checkpoints/last.safetensors in {', '.join(missing)} (a run keeps its own)")
    rows: list[dict[str, Any]] = []
    for run in args.runs:
        agent = Agent.load(run / "checkpoints" / "last.safetensors", critic_process=False)
        env = env_for(run, overrides=overrides)
        episodes = [episode_terms(agent, env, agent.config.seed + 10_000 + k) for k in range(args.episodes)]
        env.close()
        agent.close()
        same = "–" if overrides else matches_summary(run, [e["return"] for e in episodes])
        name = str(run).split("bench-runs/")[-1]
        rows.append({"run": name, "matches_run_eval": same, **mean_terms(episodes)})
        print(json.dumps(rows[-1]), flush=True)
    lines = table(rows)
    print(*lines, sep="\n")
    if args.out:
        from trustpg.io.manifest import provenance

        record = {"provenance": provenance(), "env_kwargs": overrides, "episodes": args.episodes,
                  "table": lines, "runs": rows}  # fmt: skip
        args.out.write_text(json.dumps(record, indent=1) + "\n")


def table(rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table of the rows' terms, and their mean over the rows."""
    terms = [k for k in rows[0] if k not in ("run", "matches_run_eval")]
    head = ["run", *terms, "matches the run's evaluation"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["run"], *(f"{row.get(k, 0.0):,.1f}" for k in terms), row["matches_run_eval"]]
        lines.append("| " + " | ".join(cells) + " |")
    means = [f"{np.mean([r.get(k, 0.0) for r in rows]):,.1f}" for k in terms]
    lines.append("| " + " | ".join([f"mean of {len(rows)}", *means, ""]) + " |")
    return lines


if __name__ == "__main__":
    main()
