"""What hand-written policies score on MinAtar Breakout: a scale for the learned policies' returns.

Three policies play ``MinAtar/Breakout-v0`` through Gymnasium, as training does (the full 6-action
set, sticky actions with probability 0.1, one seed per episode), reading the game's state:

* ``random``: uniform over the 6 actions;
* ``track``: move the paddle toward the ball's column;
* ``land``: move toward the column where the ball will reach the paddle's row, found by playing the
  ball forward through walls and bricks (the game's own rules: diagonal moves, reflections).

Episodes end when the ball is lost, or after ``--max-steps`` (counted as ``capped``). Writes
benchmarks/results/minatar_scripted.json (command, provenance, per-policy returns).

    python benchmarks/minatar_scripted.py --episodes 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from trustpg.envs.images import register_known

RESULTS = Path(__file__).resolve().parent / "results"
#: Indices of MinAtar's full action set: no-op, left, right.
NOOP, LEFT, RIGHT = 0, 1, 3


def landing_column(game: Any) -> int:
    """Column where the ball next reaches row 9 (the paddle's), moving as ``breakout.Env.act`` does."""
    x, y, d = game.ball_x, game.ball_y, game.ball_dir
    bricks = game.brick_map.copy()
    for _ in range(200):
        nx, ny = x + (1 if d in (1, 2) else -1), y + (1 if d in (2, 3) else -1)
        if nx < 0 or nx > 9:
            nx, d = min(max(nx, 0), 9), [1, 0, 3, 2][d]
        if ny < 0:
            ny, d = 0, [3, 2, 1, 0][d]
        elif bricks[ny, nx] == 1:
            bricks[ny, nx], ny, d = 0, y, [3, 2, 1, 0][d]
        elif ny == 9:
            return nx
        x, y = nx, ny
    return x


def act(policy: str, game: Any, rng: np.random.Generator) -> int:
    if policy == "random":
        return int(rng.integers(6))
    target = game.ball_x if policy == "track" else landing_column(game)
    return NOOP if target == game.pos else (LEFT if target < game.pos else RIGHT)


def play(policy: str, episodes: int, max_steps: int) -> dict[str, Any]:
    import gymnasium as gym

    register_known("MinAtar/Breakout-v0")
    env = gym.make("MinAtar/Breakout-v0")
    game = env.unwrapped.game.env  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    returns, capped = [], 0
    for episode in range(episodes):
        env.reset(seed=episode)
        total, steps, done = 0.0, 0, False
        while not done and steps < max_steps:
            _, r, terminated, truncated, _ = env.step(act(policy, game, rng))
            total, steps, done = total + float(r), steps + 1, terminated or truncated
        capped += not done
        returns.append(total)
    return {
        "mean": statistics.mean(returns), "std": statistics.pstdev(returns),
        "median": statistics.median(returns), "capped": capped, "episodes": episodes, "returns": returns,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--max-steps", type=int, default=10_000)
    args = p.parse_args()
    from trustpg.io.manifest import provenance

    results = {name: play(name, args.episodes, args.max_steps) for name in ("random", "track", "land")}
    for name, r in results.items():
        print(f"{name}: {r['mean']:.1f} ± {r['std']:.1f} (median {r['median']:.0f}; "
              f"{r['capped']} of {r['episodes']} episodes reached {args.max_steps} steps)")  # fmt: skip
    command = "python benchmarks/minatar_scripted.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    record = {"command": command, "provenance": provenance(), "results": results}
    (RESULTS / "minatar_scripted.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
