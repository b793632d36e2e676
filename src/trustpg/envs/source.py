"""Where a run's environments come from: an env id, a ``gymnasium.Env``, a vector env or a factory.

The config records a string (``TrainConfig.env``): the id for registered envs, ``custom:<name>``
for everything else. An :class:`EnvSource` turns what the user passed into the two things the
rest of trustpg needs: a vector env with same-step autoreset (training, see ``rollout``) and a
single env (evaluation, video).

Observations that are a ``Dict`` are flattened with ``gymnasium.spaces.flatten`` (the
``FlattenObservation`` wrapper), so policies always see a flat ``Box``; a Dict with an
``"action_mask"`` key is flattened with the mask last (:mod:`trustpg.envs.masking`).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import multiprocessing
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FlattenObservation, TimeLimit
from gymnasium.wrappers.vector import FlattenObservation as VecFlattenObservation

from trustpg.accel.children import leave_sigint_to_parent, sigint_blocked
from trustpg.envs.images import make_kwargs, register_known, standard_wrappers
from trustpg.envs.masking import FlattenWithMask, flatten_with_mask, has_mask_key

EnvLike: TypeAlias = "str | gym.Env | gym.vector.VectorEnv | Callable[[], gym.Env]"
CUSTOM_PREFIX = "custom:"
SAME_STEP = gym.vector.AutoresetMode.SAME_STEP
#: Observation spaces flattened into a Box before they reach the policy.
FLATTENED_SPACES = (gym.spaces.Dict,)


def is_custom(env_name: str) -> bool:
    """True for the name of an env given as an object or factory rather than a registered id."""
    return env_name.startswith(CUSTOM_PREFIX)


def check_env_id(env_id: str) -> None:
    """Raise ValueError for an unregistered id, with close-match suggestions."""
    if is_custom(env_id):
        raise ValueError(
            f"env {env_id!r} was given as a Python object when the agent was trained; "
            "pass env=<the env, or a factory> to recreate it (trustpg.Agent.load(path, env=...))"
        )
    install = register_known(env_id)  # MinAtar/..., ALE/... (trustpg.envs.images)
    if install is not None:
        raise ValueError(f"environment {env_id!r} needs its package: {install}")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown environment {env_id!r}.{hint} (Third-party envs must be registered "
            "by importing their package first: --env-module PKG.)"
        )


def flatten_if_needed(env: gym.Env) -> gym.Env:
    """Wrap ``env`` in ``FlattenObservation`` if its observations are a Dict (``FlattenWithMask``
    if the Dict has an ``"action_mask"`` key)."""
    if has_mask_key(env.observation_space):
        return FlattenWithMask(env)
    if isinstance(env.observation_space, FLATTENED_SPACES):
        return FlattenObservation(env)
    return env


def _name_of(obj: Any) -> str:
    spec = getattr(obj, "spec", None)
    base = getattr(obj, "unwrapped", obj)
    if spec is not None and getattr(spec, "id", None):
        return f"{CUSTOM_PREFIX}{spec.id}"
    if callable(obj) and not isinstance(obj, gym.Env | gym.vector.VectorEnv):
        return f"{CUSTOM_PREFIX}{getattr(obj, '__name__', type(obj).__name__)}"
    return f"{CUSTOM_PREFIX}{type(base).__name__}"


class EnvSource:
    """Makes the training vector env and single evaluation envs for one kind of env argument.

    - ``str``: a registered id, created with ``gymnasium.make``/``make_vec`` and ``env_kwargs``.
    - a factory ``() -> gymnasium.Env``: called once per env of the vector env and per evaluation.
    - a ``gymnasium.Env`` instance: the first training env; the others and evaluation envs are
      ``copy.deepcopy`` copies of it as it was passed in (pass a factory if it cannot be copied).
    - a ``gymnasium.vector.VectorEnv``: used as is for training (it must autoreset in
      ``AutoresetMode.SAME_STEP``); ``num_envs`` comes from it. Evaluation uses its ``env_fns``
      when it has them (gymnasium's Sync/AsyncVectorEnv), otherwise pass ``env=`` to ``evaluate``.
    """

    def __init__(self, env: EnvLike, env_kwargs: dict[str, Any] | None = None) -> None:
        self.env_kwargs = dict(env_kwargs or {})
        self._id: str | None = None
        self._factory: Callable[[], gym.Env] | None = None
        self._vector: gym.vector.VectorEnv | None = None
        self._instance: gym.Env | None = None
        self._pristine: gym.Env | None = None
        if isinstance(env, str):
            check_env_id(env)
            self._id = env
            self.name = env
        elif isinstance(env, gym.vector.VectorEnv):
            mode = env.metadata.get("autoreset_mode")
            if mode != SAME_STEP:
                raise ValueError(
                    f"vector env autoresets in mode {mode}; trustpg needs AutoresetMode.SAME_STEP "
                    "(gymnasium.make_vec(..., vector_kwargs={'autoreset_mode': "
                    "gymnasium.vector.AutoresetMode.SAME_STEP}))"
                )
            self._raw_obs_space = env.single_observation_space
            if has_mask_key(env.single_observation_space):
                raise ValueError(
                    "a vector env with an 'action_mask' Dict observation: pass the env, or a factory "
                    "of it, instead (trustpg flattens it with the mask last in each sub-env)"
                )
            if isinstance(env.single_observation_space, FLATTENED_SPACES):
                env = VecFlattenObservation(env)
            self._vector = env
            self.name = _name_of(env)
        elif isinstance(env, gym.Env):
            self._instance = env
            try:
                self._pristine = copy.deepcopy(env)
            except Exception:  # any failure means "cannot copy"; reported when a copy is needed
                self._pristine = None
            self.name = _name_of(env)
        elif callable(env):
            self._factory = env
            self.name = _name_of(env)
        else:
            raise TypeError(
                f"env must be an env id, a gymnasium.Env, a gymnasium.vector.VectorEnv or a "
                f"callable returning a gymnasium.Env; got {type(env).__name__}"
            )
        if self._id is None and self.env_kwargs:
            raise ValueError("env_kwargs only apply to env ids; configure the env object yourself")

    @property
    def vector_num_envs(self) -> int | None:
        """``num_envs`` of a given vector env (the config must agree), else None."""
        return None if self._vector is None else self._vector.num_envs

    def make_one(self, render_mode: str | None = None) -> gym.Env:
        """A fresh single env (Dict observations flattened)."""
        if self._id is not None:
            kwargs = dict(self.env_kwargs)
            if render_mode is not None:
                kwargs["render_mode"] = render_mode
            return self._standard(gym.make(self._id, **make_kwargs(self._id, kwargs)))
        if self._factory is not None:
            env = self._factory()
        elif self._instance is not None:
            env = self._copy_instance()
        else:
            fns = getattr(self._vector, "env_fns", None)
            if fns is None:
                raise ValueError(
                    f"cannot make a single env from the vector env {type(self._vector).__name__}; "
                    "pass env=<a gymnasium.Env> to evaluate"
                )
            env = fns[0]()
        if not isinstance(env, gym.Env):
            raise TypeError(f"the env factory returned {type(env).__name__}, not a gymnasium.Env")
        if render_mode is not None and env.render_mode != render_mode:
            raise ValueError(
                f"{self.name} renders in mode {env.render_mode!r}; video needs an env created "
                f"with render_mode={render_mode!r}"
            )
        return flatten_if_needed(env)

    def _standard(self, env: gym.Env) -> gym.Env:
        """An env made from the id with its standard wrappers (Atari preprocessing), flattened."""
        for wrap in standard_wrappers(self._id):
            env = wrap(env)
        return flatten_if_needed(env)

    def _copy_instance(self) -> gym.Env:
        if self._pristine is None:
            raise ValueError(
                f"the env instance {self.name} cannot be copied (copy.deepcopy failed); "
                "pass a factory (a function returning a new env) instead"
            )
        return copy.deepcopy(self._pristine)

    def make_vec(
        self, num_envs: int, vectorization: str = "sync", time_limit: int | None = None
    ) -> gym.vector.VectorEnv:
        """The training vector env, autoreset in same-step mode (see ``rollout``); ``vectorization``
        is sync, async or envpool (:mod:`trustpg.envs.envpool_backend`, env ids only).
        ``time_limit`` truncates its episodes after that many steps (``train_time_limit``;
        :meth:`make_one`, evaluation's env, keeps the env's own limit)."""
        if self._vector is not None:
            if num_envs != self._vector.num_envs:
                raise ValueError(f"num_envs={num_envs} but the vector env has {self._vector.num_envs} envs")
            if time_limit is not None:
                raise ValueError(
                    f"train_time_limit={time_limit} cannot apply to a vector env passed as is "
                    "(its sub-envs are already made); pass the env id, an env or a factory instead"
                )
            return self._vector
        kwargs = dict(self.env_kwargs)
        if time_limit is not None:
            kwargs["max_episode_steps"] = time_limit
        if vectorization == "envpool":
            if self._id is None:
                raise ValueError(f"vectorization='envpool' needs a registered env id, not {self.name}")
            from trustpg.envs.envpool_backend import EnvPoolVectorEnv

            return EnvPoolVectorEnv(self._id, num_envs, kwargs)
        if vectorization != "async":
            return self._make_vec(num_envs, vectorization, kwargs, time_limit)
        # Async workers leave a terminal's Ctrl-C (sent to the whole process group) to the
        # trainer, which stops cleanly and closes them: they start with SIGINT blocked and
        # ignore it before they build their env (accel.children).
        with sigint_blocked():
            return self._make_vec(num_envs, vectorization, kwargs, time_limit)

    def _make_vec(
        self, num_envs: int, vectorization: str, kwargs: dict[str, Any], time_limit: int | None
    ) -> gym.vector.VectorEnv:
        if self._id is not None:
            shield = [ignore_terminal_interrupt] if vectorization == "async" else []
            return gym.make_vec(
                self._id, num_envs=num_envs, vectorization_mode=vectorization,
                vector_kwargs={"autoreset_mode": SAME_STEP},
                # Gymnasium annotates wrappers as returning a Wrapper; it only needs an Env (env = w(env)).
                wrappers=[*standard_wrappers(self._id), flatten_if_needed, *shield],  # type: ignore[list-item]
                **make_kwargs(self._id, kwargs),
            )  # fmt: skip
        fns = [self._env_fn(i, time_limit) for i in range(num_envs)]
        if vectorization == "async":
            return gym.vector.AsyncVectorEnv([_shielded(fn) for fn in fns], autoreset_mode=SAME_STEP)
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=SAME_STEP)

    def _env_fn(self, i: int, time_limit: int | None = None) -> Callable[[], gym.Env]:
        if self._factory is not None:
            make = self._factory
        elif i == 0:
            instance = self._instance
            assert instance is not None
            make = lambda: instance  # noqa: E731
        else:
            make = self._copy_instance
        if time_limit is None:
            return lambda: flatten_if_needed(make())
        return lambda: flatten_if_needed(TimeLimit(make(), time_limit))

    def spaces(self) -> tuple[gym.Space, gym.Space, gym.Space]:
        """(flat observation space the policy sees, action space, the env's own observation space)."""
        if self._vector is not None:
            v = self._vector
            return v.single_observation_space, v.single_action_space, self._raw_obs_space
        if self._instance is not None:
            env = self._instance
            return flatten_if_needed(env).observation_space, env.action_space, env.observation_space
        if self._id is not None:
            probe = self._standard(gym.make(self._id, **make_kwargs(self._id, self.env_kwargs)))
        elif self._factory is not None:
            probe = self._factory()
        try:
            raw = probe.observation_space
            return flatten_if_needed(probe).observation_space, probe.action_space, raw
        finally:
            probe.close()

    def close(self) -> None:
        """Close a vector env that was passed in (envs trustpg made are closed by their owner)."""
        if self._vector is not None:
            self._vector.close()


def ignore_terminal_interrupt(env: gym.Env) -> gym.Env:
    """Ignore SIGINT if this is an async env worker process; returns ``env`` unchanged. The
    trainer owns Ctrl-C: it finishes its update, checkpoints and closes the workers. (The vector
    env also makes one env in the trainer's own process to read the spaces: left alone.) An env
    made from an id gets this as its last wrapper; until then the worker has SIGINT blocked."""
    _leave_sigint_if_worker()
    return env


def _leave_sigint_if_worker() -> None:
    if multiprocessing.parent_process() is not None:
        leave_sigint_to_parent()


def _shielded(fn: Callable[[], gym.Env]) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        _leave_sigint_if_worker()  # before the user's factory runs: it may take a while
        return fn()

    return make


def flatten_obs(space: gym.Space, obs: Any) -> np.ndarray:
    """One observation of ``space`` (a Dict gives a dict of arrays) as a flat array."""
    if has_mask_key(space) and isinstance(obs, dict):
        return flatten_with_mask(space, obs)  # type: ignore[arg-type]
    if isinstance(space, FLATTENED_SPACES) and isinstance(obs, dict):
        return np.asarray(gym.spaces.flatten(space, obs))
    return np.asarray(obs)


@contextlib.contextmanager
def recording(env: gym.Env, out: Path) -> Iterator[gym.Env]:
    """``env`` wrapped in Gymnasium's ``RecordVideo``; its first episode is written to ``out``.

    Needs moviepy (``pip install 'trustpg[video]'``) and an env made with
    ``render_mode="rgb_array"``. MuJoCo envs without a display need ``MUJOCO_GL=egl`` (or osmesa).
    """
    from gymnasium.wrappers import RecordVideo

    if env.render_mode != "rgb_array":
        raise ValueError(f"video needs an env with render_mode='rgb_array', got {env.render_mode!r}")
    out = Path(out)
    if out.suffix != ".mp4":
        raise ValueError(f"video file must end in .mp4, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".trustpg-video-") as tmp:
        folder = Path(tmp) / "video"
        try:
            wrapped = RecordVideo(env, str(folder), episode_trigger=lambda i: i == 0, name_prefix="ep")
            try:
                yield wrapped
            finally:
                wrapped.close()
        except gym.error.DependencyNotInstalled as e:
            raise ValueError(f"video needs extra packages: pip install 'trustpg[video]' ({e})") from None
        videos = sorted(folder.glob("*.mp4"))
        if not videos:
            raise RuntimeError(f"RecordVideo wrote no video for {out}")
        shutil.move(str(videos[0]), out)
