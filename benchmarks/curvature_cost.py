"""Cost of the natural-gradient direction per curvature back end, on one batch, interleaved.

    python benchmarks/curvature_cost.py --envs Hopper-v5,HalfCheetah-v5,Walker2d-v5 --repeats 15 --label idle

Per env: trains the MuJoCo preset for three batches (cg; ``--batches``), keeps the last batch, the
policy and the gradient g before its update, then times ``direction.solve`` (g̃ and the exact
g̃ᵀFg̃) for cg (the preset's CG iterations), kfac, kfac-cg (5 iterations), diagonal and empirical
on that batch from the same parameters, and the whole TRPO policy update (``rule.update``:
gradient, direction, line search; what differs between back ends in a training iteration),
alternating back ends so that a change in machine load hits all of them alike; the angle
diagnostic is off. With 1 and 2 intra-op threads (``--threads``; training uses
``update_threads``). Also, once per env, each direction's efficiency: its first-order surrogate
gain at a fixed KL as a fraction of the converged natural gradient's (1 = as good as exact).
Prints the medians (ms) and their ratio to cg, and appends them with the label and load average
to benchmarks/results/curvature_cost.json (docs/theory.md §9).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from trustpg import TRPO
from trustpg.config.presets import preset_overrides
from trustpg.config.train_config import TrainConfig
from trustpg.core import rules
from trustpg.core.fisher import fisher_vector_product
from trustpg.core.linalg import conjugate_gradient, set_flat_params
from trustpg.io.manifest import provenance
from trustpg.train.build import make_direction, make_rule

RESULTS = Path(__file__).resolve().parent / "results" / "curvature_cost.json"
#: The latest entry as the table docs/theory.md §9 copies.
TABLE = RESULTS.with_suffix(".md")
#: back end → config overrides; kfac-cg runs few CG iterations: its preconditioner does the rest.
BACKENDS: dict[str, dict[str, Any]] = {
    "cg": {}, "kfac": {}, "kfac-cg": {"pcg_iters": 5}, "diagonal": {}, "empirical": {},
}  # fmt: skip
#: CG iterations for the converged reference direction of the efficiency row.
REFERENCE_ITERS = 200


def measure(env: str, repeats: int, threads: int, batches: int = 3) -> dict[str, Any]:
    over = {**preset_overrides("mujoco", env), "progress": False, "tensorboard": False, "eval_episodes": 0}
    seen: dict[str, Any] = {}
    original = rules.TRPO.update

    def keep(self: rules.TRPO, actor: torch.nn.Module, batch: rules.PolicyBatch) -> rules.StepStats:
        start = rules._start(actor, batch)
        seen.update(actor=actor, batch=batch, theta=start.theta, g=start.g)
        return original(self, actor, batch)

    rules.TRPO.update = keep  # type: ignore[method-assign]
    try:
        agent = TRPO(env, seed=0, **over)
        agent.learn(batches * over["num_envs"] * over["steps_per_env"])
        agent.close()
    finally:
        rules.TRPO.update = original  # type: ignore[method-assign]
    config = TrainConfig(env=env, **{k: v for k, v in over.items() if k != "steps"})
    configs = {b: config.replace(curvature=b, ng_angle_states=0, **o) for b, o in BACKENDS.items()}
    directions = {b: make_direction(c) for b, c in configs.items()}
    updates = {b: make_rule(c) for b, c in configs.items()}
    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    whole: dict[str, list[float]] = {b: [] for b in BACKENDS}
    torch.set_num_threads(threads)
    for _ in range(repeats):
        for b, d in directions.items():
            set_flat_params(seen["actor"], seen["theta"])
            times[b].append(1e3 * d.solve(seen["actor"], seen["batch"], seen["g"]).seconds)
            set_flat_params(seen["actor"], seen["theta"])
            t0 = time.perf_counter()
            updates[b].update(seen["actor"], seen["batch"])
            whole[b].append(1e3 * (time.perf_counter() - t0))
    eff = efficiency(seen["actor"], seen["batch"], seen["g"], seen["theta"], directions, config.damping)
    med = {b: statistics.median(t) for b, t in times.items()}
    upd = {b: statistics.median(t) for b, t in whole.items()}
    return {
        "env": env, "threads": threads, "batches": batches, "states": int(seen["batch"].obs.shape[0]),
        "cg_iters": config.cg_iters, "median_ms": med,
        "ratio_to_cg": {b: med[b] / med["cg"] for b in BACKENDS},
        "update_median_ms": upd, "update_ratio_to_cg": {b: upd[b] / upd["cg"] for b in BACKENDS},
        "efficiency": eff,
    }  # fmt: skip


def efficiency(
    actor: torch.nn.Module, batch: rules.PolicyBatch, g: torch.Tensor, theta: torch.Tensor,
    directions: dict[str, Any], damping: float,
) -> dict[str, float]:  # fmt: skip
    """Per back end, gᵀx / sqrt(xᵀ(F + λI)x) over the same for the converged (F + λI)⁻¹g: the
    first-order surrogate gain of its step at a fixed KL, as a fraction of the best possible (1).
    On a fresh copy of each back end's state, so the timed runs are not affected."""
    set_flat_params(actor, theta)
    fvp = fisher_vector_product(actor, batch.obs, damping=damping)
    ref = conjugate_gradient(fvp, g, iters=REFERENCE_ITERS, tol=0.0).x
    best = float(g @ ref) / float(ref @ fvp(ref)) ** 0.5
    out = {}
    for b, d in directions.items():
        x = copy.deepcopy(d).solve(actor, batch, g).x
        out[b] = float(g @ x) / float(x @ fvp(x)) ** 0.5 / best
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--envs", default="Hopper-v5,HalfCheetah-v5,Walker2d-v5")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", default="1,2", help="intra-op thread counts to time (update_threads)")
    p.add_argument("--label", required=True, help="what else the machine was doing")
    p.add_argument("--batches", type=int, default=3, help="training batches before the one measured")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    rows = [measure(env, args.repeats, n, args.batches) for env in args.envs.split(",") for n in threads]
    for r in rows:
        cells = ", ".join(f"{b} {r['median_ms'][b]:.1f} ms ({r['ratio_to_cg'][b]:.2f}x)" for b in BACKENDS)
        u, ur = r["update_median_ms"], r["update_ratio_to_cg"]
        whole = ", ".join(f"{b} {u[b]:.1f} ms ({ur[b]:.2f}x)" for b in BACKENDS)
        print(f"{r['env']} ({r['states']} states, CG {r['cg_iters']} iters, {r['threads']} threads): {cells}")
        print(f"  whole update: {whole}")
    entry = {"command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]), "label": args.label,
             "loadavg": os.getloadavg(), "repeats": args.repeats, "results": rows,
             "provenance": provenance()}  # fmt: skip
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    RESULTS.write_text(json.dumps([*old, entry], indent=1) + "\n")
    TABLE.write_text(table(entry))


def table(entry: dict[str, Any]) -> str:
    """Medians in ms (ratio to cg) of the direction and of the whole update, per env and threads."""
    lines = [
        f"`python benchmarks/{entry['command']}`: medians of {entry['repeats']} in ms, "
        "ratio to cg in brackets",
        "",
        "| env (states, CG iterations) | threads | what | "
        + " | ".join(
            f"{b} ({o['pcg_iters']} iterations)" if "pcg_iters" in o else b for b, o in BACKENDS.items()
        )
        + " |",
        "|---|---|---|" + "---|" * len(BACKENDS),
    ]
    for r in entry["results"]:
        where = f"{r['env']} ({r['states']}, {r['cg_iters']})"
        for what, ms, ratio in (("direction", "median_ms", "ratio_to_cg"),
                                ("whole update", "update_median_ms", "update_ratio_to_cg")):  # fmt: skip
            cells = [f"{r[ms][b]:.1f}" + ("" if b == "cg" else f" ({r[ratio][b]:.2f}×)") for b in BACKENDS]
            lines.append(f"| {where} | {r['threads']} | {what} | " + " | ".join(cells) + " |")
        if "efficiency" in r and r["threads"] == entry["results"][0]["threads"]:
            cells = [f"{r['efficiency'][b]:.3f}" for b in BACKENDS]
            lines.append(f"| {where} | – | efficiency | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
