"""Per-iteration cost of Ray rollout workers (issue 7), and a cluster model fed with it.

    python benchmarks/scaling.py --iters 6                 # measure, write results/scaling.json
    python benchmarks/scaling.py --model-only              # re-print the model from the JSON

For each env, runs the in-process sampler and 1 and 2 Ray workers on a local Ray instance
(one CPU per worker) and records, per iteration, the medians over ``--iters`` iterations after
one warm-up iteration of: sampling (inside the workers; the slowest one), weight broadcast
(``ray.put`` + task submission), transfer (waiting for results beyond the slowest worker's
sampling: scheduling, argument fetch, result transfer and deserialisation), merge (concatenation
and normaliser merge) and the central update (GAE + policy step + critic fit). It also times the
update alone at 4× the batch, so the model can split it into a fixed and a per-sample part.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "scaling.json"
ENVS = {
    "CartPole-v1": {},
    "Hopper-v5": {"preset": "mujoco"},
}
#: Cluster assumptions of the model (documented in docs/scaling.md).
BANDWIDTH = 1.25e9  # bytes/s at the learner's NIC (10 Gbit/s)
WORKERS = (1, 2, 8, 16, 32, 64, 128, 256)


def _config(env: str, workers: int, steps_per_env: int):
    from trustpg.config.presets import preset_overrides
    from trustpg.config.train_config import TrainConfig

    over = preset_overrides(ENVS[env]["preset"], env) if ENVS[env] else {}
    over.update(steps_per_env=steps_per_env, num_envs=8, workers=workers, progress=False, tensorboard=False)
    return TrainConfig(env=env, **over)


def _nbytes(tree) -> int:
    import numpy as np
    import torch

    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, np.ndarray):
        return tree.nbytes
    if isinstance(tree, dict):
        return sum(_nbytes(v) for v in tree.values())
    return 0


def _batch_bytes(agent, steps_per_env: int) -> int:
    """Bytes of one collected batch as the learner receives it: observations, actions, rewards,
    values and next values (float32), terminated and truncated (bool), per env step."""
    import numpy as np

    obs = int(np.prod(agent.observation_space.shape))
    act = int(np.prod(agent.action_space.shape or (1,)))
    return agent.config.num_envs * steps_per_env * (4 * (obs + act + 3) + 2)


def measure(env: str, workers: int, iters: int, steps_per_env: int) -> dict:
    """Median costs of one update with ``workers`` Ray workers, from the update records (phase
    seconds) and the sampler's own breakdown (``Agent.sampler.timings``); nothing is patched."""
    from trustpg.train.agent import Agent

    agent = Agent(_config(env, workers, steps_per_env)).prepare()
    rows: list[dict[str, float]] = []

    def keep(record) -> None:
        if record["update"] == 1:
            return  # warm-up: actor start-up, first reset
        # Without overlap (workers > 0) the critic fit runs while the update waits for it.
        r = {"total": record["seconds"], "update": record["seconds"] - record["collect_seconds"],
             "critic_fit": record["critic_wait_seconds"]}  # fmt: skip
        r.update(agent.sampler.timings if workers else {
            "sampling": record["collect_seconds"] - record["critic_wait_seconds"],
            "broadcast": 0.0, "transfer": 0.0, "merge": 0.0,
        })  # fmt: skip
        rows.append(r)

    try:
        agent.learn(agent.config.batch_size * (iters + 1), callback=keep, progress=False)
        weights = {**agent.policy.state_dict(), **agent.critic.state_dict()}
        batch_bytes = _batch_bytes(agent, steps_per_env)
    finally:
        agent.close()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    batch = agent.config.batch_size
    med.update(
        workers=workers, batch=batch, steps_per_sec=batch / med["total"], weight_bytes=_nbytes(weights),
        batch_bytes=batch_bytes,
    )  # fmt: skip
    return med


def run(iters: int) -> dict:
    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    from trustpg.io.manifest import provenance

    out: dict = {"provenance": provenance(), "iters": iters, "cpus": os.cpu_count(),
                 "load_before": os.getloadavg()[0], "envs": {}}  # fmt: skip
    try:
        for env in ENVS:
            res = {f"w{w}": measure(env, w, iters, 256) for w in (0, 1, 2)}
            res["w0_4x"] = measure(env, 0, max(2, iters // 2), 1024)
            out["envs"][env] = res
            print(env, json.dumps(res, indent=1), flush=True)
    finally:
        ray.shutdown()
    out["load_after"] = os.getloadavg()[0]
    return out


def costs(res: dict) -> dict[str, float]:
    """Per-iteration and per-sample costs from the measurements (seconds, bytes)."""
    w1, w0, w0x = res["w1"], res["w0"], res["w0_4x"]
    u1 = (w0x["update"] - w0["update"]) / (w0x["batch"] - w0["batch"])
    return {
        "sample": w1["sampling"] / w1["batch"],  # per sample, in one worker
        "update_fixed": max(w0["update"] - u1 * w0["batch"], 0.0),
        "update": u1,  # per sample
        "merge": w1["merge"] / w1["batch"],  # per sample
        "bytes": w1["batch_bytes"] / w1["batch"],  # per sample
        "put": w1["broadcast"],
        "task": max(w1["transfer"] - w1["batch_bytes"] / BANDWIDTH, 0.0),
        "weight_bytes": w1["weight_bytes"],
    }


def iteration(c: dict[str, float], workers: int, batch: int) -> dict[str, float]:
    """Modelled cost of one iteration of ``batch`` samples spread over ``workers`` workers."""
    row = {
        "workers": workers, "batch": batch, "sampling": c["sample"] * batch / workers,
        "broadcast": c["put"] + workers * c["weight_bytes"] / BANDWIDTH,
        "transfer": c["task"] + batch * c["bytes"] / BANDWIDTH,
        "merge": c["merge"] * batch, "update": c["update_fixed"] + c["update"] * batch,
    }  # fmt: skip
    total = sum(row[k] for k in ("sampling", "broadcast", "transfer", "merge", "update"))
    row.update(steps_per_sec=batch / total, update_share=row["update"] / total)
    return row


def model(res: dict, per_worker_batch: int, fixed_batch: int) -> dict[str, list[dict[str, float]]]:
    """Modelled iterations for ``WORKERS``, synchronous and on-policy (nothing overlaps):

    T = sampling + broadcast + transfer + merge + update, with
    - sampling = s·B/W (s: per-sample time measured in one Ray worker; workers run in parallel),
    - broadcast = put + W·weight_bytes/BANDWIDTH (the learner's NIC sends every copy),
    - transfer = per-task overhead (measured, 1 worker) + B·bytes_per_sample/BANDWIDTH,
    - merge = m·B, update = u0 + u1·B (u0, u1 from the in-process update at two batch sizes).

    ``weak``: each worker adds ``per_worker_batch`` samples (B = W·b; users with more envs);
    ``strong``: B = ``fixed_batch`` split over the workers (the same algorithm, faster).
    """
    c = costs(res)
    return {
        "weak": [iteration(c, w, w * per_worker_batch) for w in WORKERS],
        "strong": [iteration(c, w, fixed_batch) for w in WORKERS],
    }


def crossover(res: dict, per_worker_batch: int, fixed_batch: int) -> dict[str, float]:
    """Where the central update becomes the bottleneck (update time = sampling time).

    weak: u0 + u1·W·b = s·b  ⇒  W* = (s·b − u0)/(u1·b); throughput never exceeds 1/(u1 + m + bytes/BW).
    strong: s·B/W = u0 + u1·B  ⇒  W* = s·B/(u0 + u1·B); throughput never exceeds B/(u0 + u1·B).
    """
    c = costs(res)
    b, big = per_worker_batch, fixed_batch
    per_sample = c["update"] + c["merge"] + c["bytes"] / BANDWIDTH
    return {
        "weak_workers": (c["sample"] * b - c["update_fixed"]) / (c["update"] * b),
        "weak_ceiling": 1.0 / per_sample,
        "strong_workers": c["sample"] * big / (c["update_fixed"] + c["update"] * big),
        "strong_ceiling": big / (c["update_fixed"] + c["update"] * big),
    }


def _table(rows: list[dict[str, float]]) -> list[str]:
    lines = [
        "| workers | batch | sampling | broadcast | transfer | merge | update | steps/s | update share |"
    ]
    lines += ["|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in rows:
        ms = " | ".join(
            f"{1e3 * m[k]:.0f} ms" for k in ("sampling", "broadcast", "transfer", "merge", "update")
        )
        share = f"{100 * m['update_share']:.0f}%"
        lines.append(f"| {m['workers']} | {m['batch']} | {ms} | {m['steps_per_sec']:.0f} | {share} |")
    return lines


def report(out: dict, per_worker_batch: int, fixed_batch: int) -> str:
    lines = []
    keys = ("sampling", "broadcast", "transfer", "merge", "update", "critic_fit", "total")
    for env, res in out["envs"].items():
        lines += [
            f"### {env}: measured (batch {res['w0']['batch']}, medians of {out['iters']} iterations)",
            "",
        ]
        lines += [
            "| sampler | steps/s | sampling | broadcast | transfer | merge | update | (critic fit) | total |"
        ]
        lines += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for key, name in (("w0", "in-process"), ("w1", "1 Ray worker"), ("w2", "2 Ray workers")):
            r = res[key]
            ms = " | ".join(f"{1e3 * r[k]:.1f} ms" for k in keys)
            lines.append(f"| {name} | {r['steps_per_sec']:.0f} | {ms} |")
        x, w1 = res["w0_4x"], res["w1"]
        sizes = f"weights {w1['weight_bytes']} B, batch {w1['batch_bytes']:.0f} B"
        lines += ["", f"Update alone at batch {x['batch']}: {1e3 * x['update']:.1f} ms; {sizes}.", ""]
        c = costs(res)
        lines += [
            f"Costs fed to the model: sampling {1e6 * c['sample']:.1f} µs/sample in a worker, update "
            f"{1e3 * c['update_fixed']:.1f} ms + {1e6 * c['update']:.1f} µs/sample, merge "
            f"{1e6 * c['merge']:.2f} µs/sample, put {1e3 * c['put']:.1f} ms, per-task overhead "
            f"{1e3 * c['task']:.1f} ms, {c['bytes']:.0f} B/sample.",
            "",
        ]
        m, x = model(res, per_worker_batch, fixed_batch), crossover(res, per_worker_batch, fixed_batch)
        lines += [f"Weak scaling, {per_worker_batch} samples per worker per iteration:", ""]
        lines += _table(m["weak"])
        lines += [
            "",
            f"Update = sampling at W* = {x['weak_workers']:.1f} workers; "
            f"ceiling {x['weak_ceiling']:.0f} steps/s.",
            "",
            f"Strong scaling, batch {fixed_batch} split over the workers:",
            "",
        ]
        lines += _table(m["strong"])
        lines += [
            "",
            f"Update = sampling at W* = {x['strong_workers']:.1f} workers; "
            f"ceiling {x['strong_ceiling']:.0f} steps/s.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--per-worker-batch", type=int, default=2048)
    p.add_argument("--fixed-batch", type=int, default=65536)
    p.add_argument("--model-only", action="store_true")
    a = p.parse_args()
    if a.model_only:
        out = json.loads(RESULTS.read_text())
    else:
        out = run(a.iters)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=1))
    print(report(out, a.per_worker_batch, a.fixed_batch))


if __name__ == "__main__":
    main()
