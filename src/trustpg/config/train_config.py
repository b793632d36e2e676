"""Every hyperparameter of a run, in one frozen dataclass; the CLI is generated from it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trustpg.core.names import CurvatureName, FVPMethod, KLMode

Algo = Literal["trpo", "npg", "vpg"]
#: Seeds are below 2**32 (NumPy's legacy and most libraries' range); trustpg derives other seeds
#: by adding offsets, which must stay within torch's 64-bit generator seeds.
MAX_SEED = 2**32
_VALIDATE = True
#: Layer-size fields: tuples here, lists in JSON.
_SIZES = ("hidden_sizes", "vf_hidden_sizes", "cnn_dense_sizes")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def deferred_validation():
    """Build configs without checking them (the CLI parses first, then reports one clear error)."""
    global _VALIDATE
    _VALIDATE = False
    try:
        yield
    finally:
        _VALIDATE = True


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Defaults are a TRPO run on CartPole-v1."""

    algo: Algo = "trpo"
    """Update rule: trpo (KL-constrained natural step + line search), npg (natural step), vpg."""
    env: str = "CartPole-v1"
    """Gymnasium environment id."""
    steps: int = 100_000
    """Total environment steps (summed over all envs)."""
    seed: int = 0
    """Seeds the networks, action sampling, minibatch order and the environments."""
    num_envs: int = 8
    """Number of environments in the vector env."""
    steps_per_env: int = 256
    """Steps each env takes per update; the batch has num_envs × steps_per_env transitions."""
    vectorization: Literal["sync", "async", "envpool"] = "sync"
    """Vector env: Gymnasium sync (one process) or async (one subprocess per env), or envpool (EnvPool
    steps the envs in C++ threads, same autoreset semantics; pip install 'trustpg[envpool]';
    registered ids EnvPool also has, such as the MuJoCo v5 envs; see docs/performance.md)."""
    workers: int = 0
    """Ray rollout workers (0 = sample in this process). Each steps num_envs/workers envs;
    needs the ray extra: pip install 'trustpg[ray]'. See docs/scaling.md."""
    ray_address: str | None = None
    """Address of a running Ray cluster for the workers (e.g. auto, ray://host:10001); unset
    starts a local Ray instance."""
    env_kwargs: str = "{}"
    """Keyword arguments for gymnasium.make, as a JSON object (parsed, never evaluated)."""
    train_time_limit: int | None = None
    """Cut training episodes after this many steps (a truncation: the critic's value of the last
    state stands in for the rest), so that more of the data comes from episode starts; evaluation
    keeps the env's own limit. Unset: the env's own limit. Training returns are then of the
    shortened episodes (docs/usage.md)."""

    gamma: float = 0.99
    """Discount factor γ."""
    gae_lambda: float = 0.97
    """GAE λ (bias/variance trade-off of the advantage estimate)."""
    normalize_advantages: bool = True
    """Standardise advantages per batch."""
    normalize_obs: bool = True
    """Running mean/std observation normalisation (statistics saved with checkpoints)."""
    obs_clip: float = 10.0
    """Normalised observations are clipped to ±obs_clip."""
    normalize_images: bool = False
    """Normalise image observations for the CNN too, per cell (needs normalize_obs). Off, the CNN
    only scales pixels by 1/high and frames stay uint8 in the batch; on, the batch holds float32
    frames (fine for MinAtar's 10×10; 4 bytes a pixel for Atari). See docs/benchmarks.md (MinAtar)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (as SB3's VecNormalize)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the actor (and of the critic unless vf_hidden_sizes is set)."""
    vf_hidden_sizes: tuple[int, ...] | None = None
    """Hidden layer sizes of the critic; unset: the same as hidden_sizes. The critic is fitted by
    regression, not by a trust-region step, so a wider one costs no Fisher-vector products."""
    cnn_dense_sizes: tuple[int, ...] | None = None
    """Dense layers of the CNN (actor and critic) between its convolutions and its output layer;
    unset: the paper's one layer (512 units for the Nature-CNN, 128 for the MinAtar network).
    The CNN does not use hidden_sizes."""
    activation: Literal["tanh", "relu", "elu"] = "tanh"
    """Hidden activation."""
    policy: Literal["auto", "mlp", "gru", "lstm", "cnn"] = "auto"
    """Network of actor and critic: auto (cnn for image observations, else mlp), an MLP, a GRU/LSTM
    cell of hidden_sizes[0] units under an MLP of hidden_sizes[1:] (for partially observed envs;
    trained on whole rollout sequences by backprop through time), or a CNN (Nature-CNN for frames
    of 36×36 and more, the MinAtar network below)."""
    log_std_init: float = 0.0
    """Initial log σ of Gaussian policies."""
    action_dist: Literal["gaussian", "beta"] = "gaussian"
    """Family of Box actions: a Gaussian (actions clipped to the box) or a Beta on the box
    (Chou et al. 2017; needs finite bounds). Other action spaces take only "gaussian"."""

    entropy_coef: float = 0.0
    """Weight c of an entropy bonus in the objective every rule maximises: the surrogate plus
    c·E_s[H(π(·|s))] (garage's policy_ent_coeff, PPO's ent_coef), against a policy that settles
    early on a few actions; the trust region stays a KL one, and TRPO's line search accepts a step
    that improves surrogate plus bonus. With normalised advantages 0.001-0.01 is the usual range
    (on MinAtar Breakout 0.01 lifts an MLP from 10.2 to 16.1 at 5M frames, where without it the
    policy turns deterministic in the states where it loses the ball: docs/benchmarks.md).
    0: off (the seed's objective)."""
    max_kl: float = 0.01
    """KL budget δ for TRPO, and for NPG when npg_step_size is unset."""
    max_kl_final: float | None = None
    """Anneal δ linearly in env steps from max_kl (first update) to this value (at `steps`); unset:
    constant δ. A smaller trust region late in training steadies the final policy."""
    npg_step_size: float | None = None
    """Fixed NPG step α (the seed's rule θ += α F⁻¹g). Unset: α makes ½xᵀ(F + λI)x = max_kl, λ the damping."""
    vpg_lr: float = 0.01
    """VPG learning rate α (θ += α g)."""
    vpg_optimizer: Literal["sgd", "adam"] = "sgd"
    """VPG step: plain gradient ascent (the seed's) or Adam."""
    damping: float = 0.1
    """Damping λ added to the Fisher matrix in (F + λI)⁻¹g."""
    cg_iters: int = 10
    """Conjugate-gradient iterations (curvature cg and empirical)."""
    pcg_iters: int = 5
    """Preconditioned-CG iterations of curvature kfac-cg: its K-FAC preconditioner does most of
    the work, so few are needed (5: efficiency 0.95-0.96 on MuJoCo against 25 plain CG
    iterations' 0.98-0.99, docs/theory.md §9)."""
    cg_tol: float = 1e-10
    """CG stops when ‖r‖² ≤ cg_tol·‖g‖² (relative: the step does not depend on the scale of the
    advantages)."""
    fvp_method: FVPMethod = "analytic"
    """How F v is computed: analytic JᵀMJv (faster) or the Hessian of the KL."""
    fvp_stride: int = 1
    """Use every k-th state of the batch for the Fisher (1 = all)."""
    backtrack_ratio: float = 0.8
    """TRPO line search shrinks the step by this factor per backtrack."""
    max_backtracks: int = 10
    """TRPO line search gives up (and restores θ) after this many backtracks."""
    curvature: CurvatureName = "cg"
    """How NPG and TRPO compute the natural gradient F⁻¹g: cg (exact Fisher-vector products +
    conjugate gradient), kfac (Kronecker-factored per Linear layer), kfac-cg (pcg_iters iterations
    of cg preconditioned by kfac), diagonal (exact diag F) or empirical (E[s sᵀ] of the
    actions taken, by CG). The step size always uses the exact F."""
    kl: KLMode = "mean"
    """Distance the TRPO line search keeps ≤ max_kl: mean KL(old‖new) over states, its maximum
    over states, or mean KL(new‖old). All three are logged."""
    kfac_decay: float = 0.9
    """K-FAC running averages: A ← decay·A + (1 − decay)·A_batch (0 = this batch only)."""
    ng_angle_states: int = 0
    """States for the per-update angle between an approximate back end's direction and the exact
    natural gradient (CG to convergence on that subsample, e.g. 1024); 0, the default, turns the
    diagnostic off: it costs a 50-iteration CG per update, more than kfac saves over cg."""

    vf_lr: float = 1e-3
    """Critic Adam learning rate."""
    vf_epochs: int = 5
    """Passes over the batch when fitting the critic."""
    vf_minibatch_size: int = 256
    """Critic minibatch size."""
    critic_overlap: bool = True
    """Fit the critic on batch k while batch k+1 is collected, on the second core (see
    critic_process). The value-loss columns of update k+1 report that fit."""
    critic_process: bool = True
    """With critic_overlap, fit the default MLP critic in a NumPy child process (~30 MB) instead of
    a thread, so the fit's many small calls do not take the GIL from the env stepping
    (benchmarks/contention.py). Same minibatches; equal to the in-process fit up to float32
    rounding. false: a thread, bit-identical to fitting in sequence."""

    eval_episodes: int = 10
    """Episodes of the final deterministic evaluation (0 = none)."""
    eval_every: int = 0
    """Evaluate every this many updates during training and keep the best checkpoint (0 = never)."""
    checkpoint_every: int = 10
    """Write the 'last' checkpoint every this many updates (and always at the end)."""
    max_consecutive_skips: int = 20
    """Stop with an error after this many updates in a row were skipped for numerical faults."""
    step_timeout: float = 60.0
    """Seconds one vector-env step (or reset) may take before the run stops with EnvFault; 0 = no
    limit. Async envs are timed through their pipes; sync ones by a SIGALRM timer in the main thread
    (pure-Python code, or C code once it returns to Python; see trustpg.envs.watchdog)."""
    run_dir: Path = Path("runs")
    """Parent directory of run directories."""
    run_name: str | None = None
    """Run directory name; default <env>__<algo>__s<seed>__<time>."""
    tensorboard: bool = True
    """Also write TensorBoard event files."""
    progress: bool = True
    """Show a progress bar."""
    torch_threads: int = 1
    """torch.set_num_threads for the run (1 is fastest for the small per-step MLP calls)."""
    update_threads: int = 1
    """Intra-op threads for the policy update only (gradient, CG's Fisher-vector products, line
    search); 0 = min(2, usable cores). On an otherwise idle machine 2 runs the update 1.2-1.5x faster
    (the critic fit starts after the update, so the second core is free then); when another job
    keeps the second core busy (e.g. two seeds at once) it runs ~1.7x slower, hence 1 by default
    (docs/performance.md). Results differ from 1 thread in float32 rounding only."""

    def __post_init__(self) -> None:
        # Friendly coercions for the Python API (JSON has no tuples, users pass strings for paths).
        if isinstance(self.run_dir, str):
            object.__setattr__(self, "run_dir", Path(self.run_dir))
        for name in _SIZES:
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if _VALIDATE:
            validate(self)

    @property
    def critic_hidden_sizes(self) -> tuple[int, ...]:
        return self.hidden_sizes if self.vf_hidden_sizes is None else self.vf_hidden_sizes

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.steps_per_env

    def env_kwargs_dict(self) -> dict[str, Any]:
        return parse_env_kwargs(self.env_kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["run_dir"] = str(self.run_dir)
        for name in _SIZES:
            d[name] = None if getattr(self, name) is None else list(getattr(self, name))
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(names)}")
        d = dict(d)
        if "run_dir" in d:
            d["run_dir"] = Path(d["run_dir"])
        for name in _SIZES:
            if d.get(name) is not None:
                d[name] = tuple(d[name])
        return TrainConfig(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def parse_env_kwargs(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        msg = f"env_kwargs={text!r} is invalid: env_kwargs must be a JSON object ({e.msg})"
        raise ValueError(msg) from None
    except RecursionError:
        raise ValueError(f"env_kwargs={text[:40]!r}... is invalid: nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"env_kwargs={text!r} is invalid: env_kwargs must be a JSON object")
    return value


def _need(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: must be {allowed}")


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _type_name(t: Any) -> str:
    return {int: "an int", float: "a number", bool: "true or false", str: "a string", Path: "a path"}.get(
        t, str(t)
    )


def _check_type(name: str, v: Any, t: Any) -> None:
    """TypeError (ValueError for a Literal) naming the field unless ``v`` has the annotated type."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is Literal:
        _need(v in args, name, v, "one of " + ", ".join(map(str, args)))
    elif origin in (types.UnionType, typing.Union):
        if v is not None:
            _check_type(name, v, next(a for a in args if a is not type(None)))
    elif origin is tuple:
        if not isinstance(v, tuple) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise TypeError(f"{name}={v!r} must be a tuple of ints, such as (64, 64)")
    elif t is float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError(f"{name}={v!r} must be a number")
    elif t is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise TypeError(f"{name}={v!r} must be an int")
    elif t in (bool, str, Path) and not isinstance(v, t):
        raise TypeError(f"{name}={v!r} must be {_type_name(t)}")


def validate(c: TrainConfig) -> None:
    """Check every field; raise ValueError/TypeError naming the field, its value and what is allowed."""
    hints = _field_types()
    for f in dataclasses.fields(c):
        v = getattr(c, f.name)
        _check_type(f.name, v, hints[f.name])
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{f.name}={v!r} is invalid: must be finite")
    _need(bool(c.env), "env", c.env, "a Gymnasium environment id such as CartPole-v1")
    _need(0 <= c.seed < MAX_SEED, "seed", c.seed,
          f"in [0, {MAX_SEED - 1}] (Gymnasium seeds are non-negative; torch's fit in 64 bits with the "
          "offsets trustpg adds)")  # fmt: skip
    cores = usable_cores()
    for name in ("torch_threads", "update_threads"):
        _need(getattr(c, name) <= cores, name, getattr(c, name),
              f"<= {cores}, the cores this process may use (more threads only slow it down)")  # fmt: skip
    _need(-20.0 <= c.log_std_init <= 5.0, "log_std_init", c.log_std_init, "in [-20, 5] (σ = e^log_std)")
    _need(c.run_name is None or (c.run_name not in ("", ".", "..") and not set("/\\") & set(c.run_name)),
          "run_name", c.run_name, "unset or a directory name without / or \\")  # fmt: skip
    for name in ("steps", "num_envs", "steps_per_env", "cg_iters", "pcg_iters", "vf_epochs"):
        _need(getattr(c, name) >= 1, name, getattr(c, name), ">= 1")
    for name in ("vf_minibatch_size", "fvp_stride", "torch_threads", "max_consecutive_skips"):
        _need(getattr(c, name) >= 1, name, getattr(c, name), ">= 1")
    for name in ("eval_episodes", "eval_every", "checkpoint_every", "max_backtracks", "update_threads"):
        _need(getattr(c, name) >= 0, name, getattr(c, name), ">= 0")
    _need(0.0 <= c.gamma <= 1.0, "gamma", c.gamma, "in [0, 1]")
    _need(0.0 <= c.gae_lambda <= 1.0, "gae_lambda", c.gae_lambda, "in [0, 1]")
    _need(c.max_kl > 0, "max_kl", c.max_kl, "> 0 (a KL budget δ such as 0.01)")
    _need(c.max_kl_final is None or c.max_kl_final > 0, "max_kl_final", c.max_kl_final,
          "unset (constant δ) or > 0, e.g. 0.1 × max_kl (a zero budget allows no step)")  # fmt: skip
    _need(c.npg_step_size is None or c.npg_step_size > 0, "npg_step_size", c.npg_step_size, "> 0")
    _need(c.vpg_lr > 0, "vpg_lr", c.vpg_lr, "> 0")
    _need(c.entropy_coef >= 0, "entropy_coef", c.entropy_coef,
          ">= 0 (a bonus for entropy; a negative weight would push the policy to collapse)")  # fmt: skip
    _need(c.damping >= 0, "damping", c.damping, ">= 0")
    _need(c.cg_tol >= 0, "cg_tol", c.cg_tol, ">= 0")
    _need(c.step_timeout >= 0, "step_timeout", c.step_timeout, ">= 0 seconds (0 = no limit)")
    _need(0 < c.backtrack_ratio < 1, "backtrack_ratio", c.backtrack_ratio, "in (0, 1)")
    _need(0.0 <= c.kfac_decay < 1.0, "kfac_decay", c.kfac_decay, "in [0, 1)")
    _need(c.ng_angle_states >= 0, "ng_angle_states", c.ng_angle_states, ">= 0 (0 turns it off)")
    _need(c.vf_lr > 0, "vf_lr", c.vf_lr, "> 0")
    _need(c.obs_clip > 0, "obs_clip", c.obs_clip, "> 0")
    _need(c.normalize_obs or not c.normalize_images, "normalize_images", c.normalize_images,
          "false with normalize_obs=false (it extends observation normalisation to images)")  # fmt: skip
    _need(len(c.hidden_sizes) >= 1 and all(h >= 1 for h in c.hidden_sizes),
          "hidden_sizes", c.hidden_sizes, "one or more positive layer sizes")  # fmt: skip
    vf = c.vf_hidden_sizes
    _need(vf is None or (len(vf) >= 1 and all(h >= 1 for h in vf)), "vf_hidden_sizes", vf,
          "unset (as hidden_sizes) or one or more positive layer sizes")  # fmt: skip
    cnn = c.cnn_dense_sizes
    _need(cnn is None or (len(cnn) >= 1 and all(h >= 1 for h in cnn)), "cnn_dense_sizes", cnn,
          "unset (the paper's layer) or one or more positive layer sizes")  # fmt: skip
    _need(cnn is None or c.policy in ("auto", "cnn"), "cnn_dense_sizes", cnn,
          f"unset with policy={c.policy!r} (it sizes the CNN's dense layers; set hidden_sizes)")  # fmt: skip
    _need(c.fvp_stride <= c.batch_size, "fvp_stride", c.fvp_stride,
          f"<= the batch size num_envs*steps_per_env = {c.batch_size}")  # fmt: skip
    _need(c.policy in ("auto", "mlp") or c.curvature == "cg", "curvature", c.curvature,
          f"cg with policy={c.policy!r} (kfac, kfac-cg, diagonal and empirical are written for Linear "
          "layers applied to each state on its own)")  # fmt: skip
    _need(c.vectorization in ("sync", "async", "envpool"), "vectorization", c.vectorization,
          "sync, async or envpool")  # fmt: skip
    _need(c.workers >= 0, "workers", c.workers, ">= 0 (0 samples in-process)")
    _need(c.workers == 0 or c.num_envs % c.workers == 0, "workers", c.workers,
          f"a divisor of num_envs={c.num_envs} (each worker steps num_envs/workers envs)")  # fmt: skip
    _need(c.ray_address is None or (isinstance(c.ray_address, str) and bool(c.ray_address)),
          "ray_address", c.ray_address, "unset or a Ray address such as ray://host:10001")  # fmt: skip
    _need(c.train_time_limit is None or c.train_time_limit >= 1, "train_time_limit", c.train_time_limit,
          "unset (the env's own time limit) or >= 1 steps")  # fmt: skip
    parse_env_kwargs(c.env_kwargs)
