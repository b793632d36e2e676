"""The seed's questions as runnable experiments: ``trustpg experiment NAME [--out DIR] [--smoke]``.

Each experiment is a module with ``run(out: Path, budget: "full" | "smoke") -> list[Path]`` that
writes its figure(s) and table(s) into ``out``. docs/theory.md shows the full-budget outputs.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

#: Experiment name → module (imported only when run).
EXPERIMENTS: dict[str, str] = {
    "bernoulli": "trustpg.experiments.bernoulli",
    "invariance": "trustpg.experiments.invariance",
    "stepsize-vs-constraint": "trustpg.experiments.stepsize_vs_constraint",
    "stepsize-raw": "trustpg.experiments.stepsize_raw",
    "why-constraint": "trustpg.experiments.why_constraint",
    "angle": "trustpg.experiments.angle",
    "curvature": "trustpg.experiments.curvature",
}
DESCRIPTIONS = {
    "bernoulli": "the seed's F(θ) = 1/θ + 1/(1−θ) three ways; vanilla vs natural steps across θ",
    "invariance": "one step in two parameterisations: vanilla KLs differ, natural KLs agree",
    "stepsize-vs-constraint": "sweep VPG lr, NPG α, TRPO δ on CartPole, Pendulum and Hopper",
    "stepsize-raw": "the same sweep without advantage/reward normalisation (task scale left in)",
    "why-constraint": "large unconstrained natural steps vs TRPO: KL per update, catastrophic drops",
    "angle": "angle between natural and vanilla gradient, predicted vs measured KL, in training",
    "curvature": "TRPO with cg / kfac / kfac-cg / diagonal / empirical Fisher, and mean vs max KL: return, "
    "cost, angle to the exact natural gradient",
}
#: Options only some experiments take (passed to their ``run`` only when given).
_LIST_OPTIONS = ("envs", "variants", "seeds")


def run_experiment(argv: list[str], parser: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> int:
    """Parse ``NAME [--out DIR] [--smoke]`` with ``parser`` (the CLI passes its one-line-error
    parser), run the experiment, list the files it wrote."""
    epilog = "\n".join(f"  {k:24s}{v}" for k, v in DESCRIPTIONS.items())
    p = parser(
        prog="trustpg experiment",
        description="Run one of the seed's experiments.",
        epilog="experiments:\n" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="experiment name (underscores work too)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default experiments/NAME)")
    p.add_argument("--smoke", action="store_true", help="tiny budget: checks it runs, numbers mean little")
    p.add_argument("--envs", default=None, help="comma-separated env ids (experiments that take them)")
    p.add_argument("--variants", default=None, help="comma-separated variants (curvature)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (curvature)")
    p.add_argument("--steps", type=int, default=None, help="env steps per run (curvature)")
    args = p.parse_args(argv)
    extra: dict[str, object] = {}
    for key in _LIST_OPTIONS:
        value = getattr(args, key)
        if value is not None:
            items = [v.strip() for v in value.split(",") if v.strip()]
            extra[key] = [int(v) for v in items] if key == "seeds" else items
    if args.steps is not None:
        extra["steps"] = args.steps
    name = args.name.replace("_", "-")
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {args.name!r}; choose from {', '.join(EXPERIMENTS)}")
    out = args.out if args.out is not None else Path("experiments") / name
    module = importlib.import_module(EXPERIMENTS[name])
    t0 = time.perf_counter()
    if extra and "envs" not in (module.run.__kwdefaults__ or {}):
        raise ValueError(f"experiment {name} takes no --envs/--variants/--seeds/--steps")
    paths = module.run(out, budget="smoke" if args.smoke else "full", **extra)
    kind = "smoke" if args.smoke else "full"
    print(f"experiment {name} ({kind}) took {time.perf_counter() - t0:.1f} s, wrote:")
    for path in paths:
        print(f"  {path}")
    return 0
