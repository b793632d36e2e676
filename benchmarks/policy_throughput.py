"""Steps per second of each network type trustpg trains (issue 21: "throughput of each policy type
measured"), whole training (collection, update, critic fit), one run at a time.

    python benchmarks/policy_throughput.py --repeats 3     # writes benchmarks/results/policy_throughput.json
    python benchmarks/policy_throughput.py --repeats 5 --kinds mask \
        --out benchmarks/results/masking_throughput.json    # the masking rows only

Each measurement is a fresh subprocess (one torch thread per process, as training uses): it makes the
agent, trains one update untimed (warm-up: envs, first allocations), then times ``--updates``
updates through the public API (``Agent.learn``) and reports env steps / seconds. The kinds are
interleaved within each repeat so machine noise hits them alike; medians are reported. Image rows
need the ``images`` extra (skipped with a note otherwise). The masking rows train on the toy env of
the tests (tests/integration/_masked_envs.py, imported in the child to register it), masked and with
the same mask as an ordinary observation feature: the difference is what masking costs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: (label, env, TrainConfig overrides, module that must be importable or None)
KINDS: list[tuple[str, str, dict, str | None]] = [
    ("mlp", "trustpg/CartPoleNoVel-v1", {"policy": "mlp"}, None),
    ("gru", "trustpg/CartPoleNoVel-v1", {"policy": "gru"}, None),
    ("lstm", "trustpg/CartPoleNoVel-v1", {"policy": "lstm"}, None),
    ("mlp, Gaussian", "Pendulum-v1", {"policy": "mlp"}, None),
    ("mlp, Beta", "Pendulum-v1", {"policy": "mlp", "action_dist": "beta"}, None),
    ("gru, Gaussian", "Pendulum-v1", {"policy": "gru"}, None),
    ("cnn (MinAtar net)", "MinAtar/Breakout-v1", {"policy": "cnn"}, "minatar"),
    ("mlp on the frames", "MinAtar/Breakout-v1", {"policy": "mlp"}, "minatar"),
    ("cnn (Nature-CNN)", "ALE/Pong-v5", {"policy": "cnn", "num_envs": 2, "steps_per_env": 64}, "ale_py"),
    ("mlp, masked Discrete(6)", "trustpg_test/PickTarget6-v0", {}, None),
    ("mlp, unmasked Discrete(6) (mask as a feature)", "trustpg_test/PickTarget6Feature-v0", {}, None),
    ("mlp, masked MultiDiscrete(3, 4)", "trustpg_test/PickTarget-v0", {}, None),
    ("mlp, unmasked MultiDiscrete(3, 4) (mask as a feature)", "trustpg_test/PickTargetFeature-v0", {}, None),
]
#: Where the toy envs of the tests live: the child imports them when an id names one.
TEST_ENVS = Path(__file__).resolve().parents[1] / "tests" / "integration"

CHILD = """
import json, sys, time
from trustpg import TRPO
env, over, updates = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
if env.startswith("trustpg_test/"):
    sys.path.insert(0, sys.argv[4])
    import _masked_envs  # registers the masking toy envs
agent = TRPO(env, seed=0, progress=False, tensorboard=False, eval_episodes=0, **over)
per = agent.config.batch_size
agent.learn(per)
t = time.perf_counter()
agent.learn(per * updates)
print(json.dumps({"steps_per_sec": per * updates / (time.perf_counter() - t)}))
agent.close()
"""


def measure(env: str, over: dict, updates: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, env, json.dumps(over), str(updates), str(TEST_ENVS)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_sec"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--kinds", default="", help="only the rows whose label contains this text")
    p.add_argument("--out", type=Path, default=RESULTS / "policy_throughput.json")
    args = p.parse_args()
    chosen = [k for k in KINDS if args.kinds in k[0]]
    kinds = [k for k in chosen if k[3] is None or importlib.util.find_spec(k[3]) is not None]
    skipped = [k[0] for k in chosen if k not in kinds]
    samples: dict[str, list[float]] = {k[0] + " @ " + k[1]: [] for k in kinds}
    for r in range(args.repeats):
        for label, env, over, _ in kinds:
            sps = measure(env, over, args.updates)
            samples[f"{label} @ {env}"].append(sps)
            print(f"repeat {r}: {label} @ {env}: {sps:,.0f} steps/s", flush=True)
    rows = {k: {"median_steps_per_sec": statistics.median(v), "samples": v} for k, v in samples.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from trustpg.io.manifest import provenance

    out = {"command": " ".join(sys.argv), "repeats": args.repeats, "updates": args.updates,
           "date": time.strftime("%Y-%m-%d"), "skipped (package missing)": skipped, "rows": rows,
           "provenance": provenance()}  # fmt: skip
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print("\n| network @ env | steps/s (median) |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['median_steps_per_sec']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
