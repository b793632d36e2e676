"""Policy-update time with and without the hand-written MLP FVP, alternating per update, in one
Hopper-v5 run (docs/performance.md). The FVP was deleted after this measurement; run it against the
tree before that commit:

    git worktree add /tmp/before <commit>^ && PYTHONPATH=/tmp/before/src python benchmarks/fvp_share.py 61440
"""

import statistics
import sys
import time

from trustpg import TRPO
from trustpg.accel import mlp_fisher  # type: ignore[attr-defined]
from trustpg.config.presets import preset_overrides
from trustpg.core import rules as steps

over = preset_overrides("mujoco", "Hopper-v5")
over["progress"] = False
agent = TRPO("Hopper-v5", seed=0, **over)
agent.learn(4096)
times = {"on": [], "off": []}
real = steps.TRPO.update
k = [0]


def timed(self, *a, **kw):
    mode = "on" if k[0] % 2 == 0 else "off"
    k[0] += 1
    object.__setattr__(self.direction, "fast_fvp", mlp_fisher.fast_fvp if mode == "on" else None)
    t = time.perf_counter()
    try:
        return real(self, *a, **kw)
    finally:
        times[mode].append(time.perf_counter() - t)


steps.TRPO.update = timed
t = time.perf_counter()
agent.learn(int(sys.argv[1]))
total = time.perf_counter() - t
agent.close()
n = len(times["on"]) + len(times["off"])
on, off = statistics.median(times["on"]), statistics.median(times["off"])
saved = 100 * (off - on) / (total / n)
print(
    f"updates {n}; median update on {on * 1e3:.1f} ms, off {off * 1e3:.1f} ms; total {total:.2f} s "
    f"({total / n * 1e3:.0f} ms per update); saved {saved:.1f} % of an update's wall time"
)
