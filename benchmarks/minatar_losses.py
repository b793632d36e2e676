"""Where a trained policy loses the ball in MinAtar Breakout, and whether it could have saved it.

    python benchmarks/minatar_losses.py --checkpoint RUN/checkpoints/last.safetensors
    python benchmarks/minatar_losses.py --train-steps 1000000    # first trains an MLP, seed 0

Plays ``--episodes`` episodes of ``MinAtar/Breakout-v0`` (sticky actions as in training, episode k
seeded 1000 + k) with the policy's most likely action, then with sampled actions. For every lost
ball it finds the *turn*, the last step at which the ball's landing column (where it reaches the
paddle's row; benchmarks/minatar_scripted.py) changed, and records the paddle's distance to that
column (or to the ball's column the step before, which also catches it) then, the moves left
before the ball arrives (``reachable`` when the distance is at most that: the paddle moves one
column per step), and ``p_save``: the probability that the policy, sampling from the turn on,
has the paddle where the ball arrives (exact, over the paddle's columns: the ball's course does
not depend on the paddle until it arrives; sticky actions left out), next to the same
probability for uniformly random actions. Writes
benchmarks/results/minatar_losses.json, or ``--out`` (command, provenance, per-mode summaries).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustpg.envs.images import register_known

if __package__:  # imported as benchmarks.minatar_losses (the tests)
    from benchmarks.minatar_scripted import LEFT, RIGHT, landing_column
else:  # run as a script, with benchmarks/ on the path
    from minatar_scripted import LEFT, RIGHT, landing_column  # type: ignore[import-not-found,no-redef]

RESULTS = Path(__file__).resolve().parent / "results"
ENV = "MinAtar/Breakout-v0"


def p_save(snapshots: list[Any], pos: int, probs_at: Callable[[Any], np.ndarray]) -> float:
    """Probability that actions drawn from ``probs_at(game)`` (over the full action set) move the
    paddle from column ``pos`` to where the ball arrives, over the steps of ``snapshots`` (the game
    before each step's action, the last one the step the ball reaches the paddle's row). The ball
    is caught from its column before that step or the one it arrives at (``breakout.Env.act``)."""
    mass = np.zeros(10)
    mass[pos] = 1.0
    for game in snapshots:
        nxt = np.zeros(10)
        for col in np.flatnonzero(mass):
            ghost = copy.deepcopy(game)
            ghost.pos = int(col)
            pr = probs_at(ghost)
            left, right = float(pr[LEFT]), float(pr[RIGHT])
            nxt[max(col - 1, 0)] += mass[col] * left
            nxt[min(col + 1, 9)] += mass[col] * right
            nxt[col] += mass[col] * (1.0 - left - right)
        mass = nxt
    last = snapshots[-1]
    return float(mass[sorted({int(last.ball_x), landing_column(last)})].sum())


def analyse_loss(snapshots: list[Any], probs_at: Callable[[Any], np.ndarray]) -> dict[str, Any]:
    """The last ball's course in an episode's ``snapshots`` (the game before each step's action):
    when its landing column was set (the turn), and the chances of saving it from there."""
    lands = [landing_column(g) for g in snapshots]
    turn = len(lands) - 1
    while turn > 0 and lands[turn - 1] == lands[-1]:
        turn -= 1
    pos, window = int(snapshots[turn].pos), snapshots[turn:]
    distance = min(abs(col - pos) for col in (lands[-1], int(snapshots[-1].ball_x)))
    uniform = np.full(6, 1 / 6)
    return {
        "distance": distance, "moves_left": len(window), "reachable": distance <= len(window),
        "p_save": p_save(window, pos, probs_at), "p_save_uniform": p_save(window, pos, lambda g: uniform),
    }  # fmt: skip


def play(agent: Any, episodes: int, deterministic: bool, max_steps: int) -> dict[str, Any]:
    import gymnasium as gym

    register_known(ENV)
    env = gym.make(ENV)
    game = env.unwrapped.game.env  # type: ignore[attr-defined]

    def probs_at(g: Any) -> np.ndarray:
        return agent.trainer.distribution(np.asarray(g.state())[None]).probs[0].numpy()

    gen = torch.Generator().manual_seed(0)
    returns: list[float] = []
    losses: list[dict[str, Any]] = []
    for k in range(episodes):
        obs, _ = env.reset(seed=1000 + k)
        snapshots: list[Any] = []
        total, terminated, truncated = 0.0, False, False
        while not (terminated or truncated) and len(snapshots) < max_steps:
            snapshots.append(copy.deepcopy(game))
            dist = agent.trainer.distribution(np.asarray(obs)[None])
            action = int((dist.mode() if deterministic else dist.sample(gen))[0])
            obs, r, terminated, truncated, _ = env.step(action)
            total += float(r)
        returns.append(total)
        if terminated:  # the ball was lost (a time limit or --max-steps is not a loss)
            losses.append({"episode": k, "return": total, "length": len(snapshots),
                           **analyse_loss(snapshots, probs_at)})  # fmt: skip
    reachable = [x for x in losses if x["reachable"]]
    med = statistics.median
    return {
        "episodes": episodes,
        "return_mean": statistics.fmean(returns), "return_std": statistics.pstdev(returns),
        "returns_most_common": collections.Counter(returns).most_common(5),
        "lost": len(losses), "lost_reachable": len(reachable),
        "p_save_median": med([x["p_save"] for x in reachable]) if reachable else None,
        "p_save_uniform_median": med([x["p_save_uniform"] for x in reachable]) if reachable else None,
        "losses": losses,
    }  # fmt: skip


def agent_from(args: argparse.Namespace) -> Any:
    from trustpg import TRPO
    from trustpg.config.presets import preset_overrides

    if args.checkpoint:
        return TRPO.load(args.checkpoint)
    over = preset_overrides("classic", ENV)
    over.update(policy="mlp", progress=False, tensorboard=False)
    agent = TRPO(ENV, seed=args.seed, **over)
    agent.learn(args.train_steps)
    return agent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="a trained Breakout-v0 agent (a run's checkpoint)")
    p.add_argument("--train-steps", type=int, default=1_000_000, help="without --checkpoint: train an MLP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--max-steps", type=int, default=10_000)
    p.add_argument("--out", default="minatar_losses.json", help="file name under benchmarks/results/")
    args = p.parse_args()
    from trustpg.io.manifest import provenance

    torch.set_num_threads(1)
    agent = agent_from(args)
    modes = {"most likely action": True, "sampled actions": False}
    results = {name: play(agent, args.episodes, det, args.max_steps) for name, det in modes.items()}
    for name, r in results.items():
        print(f"{name}: return {r['return_mean']:.1f} ± {r['return_std']:.1f} "
              f"(most common {r['returns_most_common'][:3]}); {r['lost']} balls lost, "
              f"{r['lost_reachable']} reachable; chance of saving those from the turn, median: the policy "
              f"{r['p_save_median']}, random actions {r['p_save_uniform_median']}")  # fmt: skip
    command = "python benchmarks/minatar_losses.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    record = {"command": command, "provenance": provenance(), "results": results}
    (RESULTS / args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
