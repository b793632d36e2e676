"""Learning tests assert over several seeds, never over one (issue 18).

A seeded run repeats exactly on one machine only: another CPU, BLAS, PyTorch or MuJoCo release
rounds differently, and from the first differing bit the run follows another trajectory. On a new
machine each seed's outcome is a fresh draw, so a bar that one seed clears "here" is no test. The
learning tests therefore train every seed of SEEDS and assert a statistic over them (the median:
2 of 3 seeds), with bars set from per-seed measurements over 10-20 seeds (README.md, "Tests").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trustpg import Agent

#: Fixed before any result was seen. Never change or drop a seed to make a test pass: lower the
#: bar (with the measurements that justify it) or train longer instead.
SEEDS = (0, 1, 2)


@dataclass
class Run:
    seed: int
    rows: list[dict]  # the metrics row of every update
    before: float  # evaluate(10) of the untrained policy
    final: float  # evaluate(10) after training
    evals: list[float]  # the periodic evaluations (config eval_every), then the final one

    @property
    def best(self) -> float:
        return max(self.evals)

    @property
    def late_return(self) -> float:
        """Mean training return (the sampled, stochastic policy) over the last 10 updates."""
        returns = [r["mean_return"] for r in self.rows[-10:] if math.isfinite(r["mean_return"])]
        return statistics.mean(returns) if returns else math.nan


def train_seeds(make: Callable[[int], Agent], steps: int, seeds: Iterable[int] = SEEDS) -> list[Run]:
    """Train ``make(seed)`` for ``steps`` env steps on every seed; evaluate 10 episodes before and after."""
    runs = []
    for seed in seeds:
        agent = make(seed)
        try:
            before, _, _ = agent.evaluate(10)
            rows: list[dict] = []
            agent.learn(steps, callback=rows.append, progress=False)
            final, _, _ = agent.evaluate(10)
        finally:
            agent.close()
        periodic = [r["eval_return"] for r in rows if math.isfinite(r.get("eval_return", math.nan))]
        runs.append(Run(seed, rows, before, final, [*periodic, final]))
    return runs


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def summary(runs: list[Run]) -> str:
    """Per-seed numbers for an assertion message."""
    return "; ".join(
        f"seed {r.seed}: eval before {r.before:.1f}, best {r.best:.1f}, final {r.final:.1f}; "
        f"train return {r.rows[0]['mean_return']:.1f} -> {r.rows[-1]['mean_return']:.1f}, "
        f"last 10 updates {r.late_return:.1f}"
        for r in runs
    )


def assert_solves_cartpole(runs: list[Run], max_kl: float | None = 0.01) -> None:
    """The CartPole-v1 bar of TRPO/NPG within 100k steps, from runs with eval_every=5 (every ~10k steps).

    Measured (TRPO at commit 307639e, seeds 0-19): at exactly 100k steps 17 seeds evaluate at 500,
    three at 206-330. After solving, the deterministic policy dips for tens of thousands of steps and
    recovers: evaluated every 4k steps from 60k to 130k, 14 % of the evaluations are below 475,
    1.4 % below 200, none below 150. A final evaluation ≥ 475 would fail 2 of 3 seeds on ~5-10 %
    of machines. So the bars are:
    - 2 of 3 seeds *reach* an evaluation ≥ 475 (CartPole's "solved") within 100k steps: all 30
      measured seeds did (20 in-process, 10 with two Ray workers), the last at 61k, most by 20k;
    - the final evaluation has not collapsed: median ≥ 200 (seeds 0-19: ≥ 206);
    - the sampled policy learned: median training return over the last 10 updates ≥ 200 (seeds
      0-19: 268-500, median ~450; untrained ~20). This is the check that catches a learner that
      barely moves: CartPole's deterministic evaluation is a weak signal, with a KL budget 10⁴
      times too small (δ = 1e-6) seeds 0 and 2 still evaluate at 500 within 20k steps while their
      training return stays ~25 (δ = 1e-5: ~40).
    """
    assert all(r.rows[-1]["env_steps"] <= 100_352 for r in runs)
    assert median(r.best for r in runs) >= 475, summary(runs)
    assert median(r.final for r in runs) >= 200, summary(runs)
    assert median(r.late_return for r in runs) >= 200, summary(runs)
    if max_kl is not None:  # the constraint held on every accepted update of every seed
        assert all(row["measured_kl"] <= max_kl + 1e-9 for r in runs for row in r.rows if not row["skipped"])
