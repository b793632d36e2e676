"""The full state of a run's environments as JSON, so a resumed run continues bit-exactly (issue 6).

A checkpoint must let training continue as if it had never stopped, so it holds the state of every
sub-env of the vector env mid-episode: the physics, the ``TimeLimit`` step counter and the env's
random generator. Nothing is pickled: values are encoded as JSON (numbers, strings, numeric arrays
as base64 with an explicit dtype) and decoding never executes anything from the file.

What can be captured is decided by type, through a registry of :class:`StateHandler`:

- Gymnasium's classic-control envs (CartPole, Pendulum, Acrobot, MountainCar, ...): their plain
  attributes (``state``, ``last_u``, ...) and ``np_random``.
- MuJoCo envs: the same, plus every numeric array of ``MjData`` (qpos, qvel, act, the solver warm
  start, and derived quantities such as ``xpos`` and ``cfrc_ext`` that Ant and Humanoid read before
  the next ``mj_step``) and ``data.time``.
- The wrappers ``gymnasium.make`` adds (``TimeLimit``, ``OrderEnforcing``, ``PassiveEnvChecker``),
  ``FlattenObservation``, and the image wrappers ``AtariPreprocessing`` (its two-frame max-pool
  buffer, lives) and ``FrameStackObservation`` (the stacked frames).
- MinAtar and ALE Atari envs (the game state, the emulator state with its RNG): registered by
  :mod:`trustpg.envs.images` when their ids are first used.

Any other env or wrapper (Box2D, third-party) is reported as unsupported; the trainer then falls
back to fresh episodes and warns (docs/reliability.md). Register a pure-Python env whose state is
its plain attributes with ``register_env_state(MyEnv)``, or pass your own ``StateHandler``.
"""

from __future__ import annotations

import base64
import sys
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

#: numpy dtype kinds that are stored (bool, signed/unsigned int, float, complex); never "O".
_NUMERIC_KINDS = "biufc"
#: Bit generators a saved ``np_random`` may name (looked up in this table, never by getattr).
_BIT_GENERATORS = {c.__name__: c for c in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                                           np.random.Philox, np.random.SFC64)}  # fmt: skip


class Unencodable(TypeError):
    """A value that has no exact JSON encoding here (objects, object arrays, non-str dict keys)."""


def encode(value: Any) -> Any:
    """An exact JSON-serialisable encoding of plain Python values and numeric numpy arrays.

    Floats stay JSON numbers (``repr`` round-trips exactly, NaN/inf included); arrays and numpy
    scalars become ``{"__ndarray__": dtype, "shape": [...], "data": base64}``; tuples and dicts are
    tagged so :func:`decode` restores their type.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise Unencodable(f"array of dtype {arr.dtype}")
        data = base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")
        tag = "__ndarray__" if isinstance(value, np.ndarray) else "__npscalar__"
        return {tag: arr.dtype.str, "shape": list(arr.shape), "data": data}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise Unencodable("dict with non-string keys")
        return {"__dict__": {k: encode(v) for k, v in value.items()}}
    raise Unencodable(type(value).__name__)


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`; only numeric dtypes are accepted."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: decode(v) for k, v in value["__dict__"].items()}
    for tag in ("__ndarray__", "__npscalar__"):
        if tag in value:
            dtype = np.dtype(value[tag])
            if dtype.kind not in _NUMERIC_KINDS:
                raise ValueError(f"refusing to decode an array of dtype {dtype}")
            raw = base64.b64decode(value["data"], validate=True)
            arr = np.frombuffer(raw, dtype=dtype).reshape(value["shape"]).copy()
            return arr if tag == "__ndarray__" else arr[()]
    raise ValueError(f"not an encoded value: {sorted(value)}")


def plain_attributes(obj: Any, skip: tuple[str, ...] = ("_np_random",)) -> dict[str, Any]:
    """The attributes of ``obj`` that :func:`encode` can store exactly (others are left out)."""
    out = {}
    for name, value in vars(obj).items():
        if name in skip:
            continue
        try:
            out[name] = encode(value)
        except Unencodable:
            continue
    return out


def _capture_attributes(env: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"attrs": plain_attributes(env)}
    rng = vars(env).get("_np_random")
    if isinstance(rng, np.random.Generator):
        bit_gen = rng.bit_generator
        state["np_random"] = {"bit_generator": type(bit_gen).__name__, "state": encode(bit_gen.state)}
    return state


def _restore_attributes(env: Any, state: dict[str, Any]) -> None:
    for name, value in state["attrs"].items():
        setattr(env, name, decode(value))
    if "np_random" in state:
        saved = state["np_random"]
        bit_gen = _BIT_GENERATORS[saved["bit_generator"]]()
        bit_gen.state = decode(saved["state"])
        env._np_random = np.random.Generator(bit_gen)


def _mjdata_arrays(data: Any) -> dict[str, np.ndarray]:
    arrays = {}
    for name in dir(data):
        if name.startswith("_"):
            continue
        try:
            value = getattr(data, name)
        except Exception:  # some MjData properties raise when unused; skip them
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC_KINDS:
            arrays[name] = value
    return arrays


def _capture_mujoco(env: Any) -> dict[str, Any]:
    state = _capture_attributes(env)
    arrays = _mjdata_arrays(env.data)
    state["mjdata"] = {name: encode(a) for name, a in arrays.items()}
    state["mjtime"] = float(env.data.time)
    return state


def _restore_mujoco(env: Any, state: dict[str, Any]) -> None:
    _restore_attributes(env, state)
    current = _mjdata_arrays(env.data)
    for name, value in state["mjdata"].items():
        target = current.get(name)
        arr = decode(value)
        # Arrays sized by the number of contacts/constraints may differ in shape; mj_step
        # recomputes those from qpos/qvel, so only same-shaped arrays need (and get) restoring.
        if target is not None and target.shape == arr.shape:
            np.copyto(target, arr)
    env.data.time = state["mjtime"]


@dataclass(frozen=True)
class StateHandler:
    """How to capture one env (or wrapper) type as JSON and put that state back."""

    capture: Callable[[Any], dict[str, Any]]
    restore: Callable[[Any, dict[str, Any]], None]


def _capture_frame_stack(wrapper: Any) -> dict[str, Any]:
    state = _capture_attributes(wrapper)
    state["obs_queue"] = [encode(frame) for frame in wrapper.obs_queue]
    return state


def _restore_frame_stack(wrapper: Any, state: dict[str, Any]) -> None:
    _restore_attributes(wrapper, state)
    wrapper.obs_queue = deque((decode(f) for f in state["obs_queue"]), maxlen=wrapper.stack_size)


#: Plain attributes and ``np_random``: right for envs whose whole state is in such attributes.
ATTRIBUTES = StateHandler(_capture_attributes, _restore_attributes)
MUJOCO = StateHandler(_capture_mujoco, _restore_mujoco)
FRAME_STACK = StateHandler(_capture_frame_stack, _restore_frame_stack)
_HANDLERS: list[tuple[type, StateHandler]] = []


def register_env_state(cls: type, handler: StateHandler = ATTRIBUTES) -> None:
    """Declare that envs (or wrappers) of type ``cls`` can be captured with ``handler``."""
    _HANDLERS.insert(0, (cls, handler))


def _register_builtins() -> None:
    from gymnasium import wrappers as w
    from gymnasium.envs import classic_control as cc

    plain = (w.TimeLimit, w.OrderEnforcing, w.PassiveEnvChecker, w.FlattenObservation, w.AtariPreprocessing)

    for cls in plain:
        register_env_state(cls)
    register_env_state(w.FrameStackObservation, FRAME_STACK)
    classic = (cc.CartPoleEnv, cc.PendulumEnv, cc.AcrobotEnv, cc.MountainCarEnv, cc.Continuous_MountainCarEnv)
    for env_cls in classic:
        register_env_state(env_cls)


_register_builtins()
_MUJOCO_ENV_MODULE = "gymnasium.envs.mujoco.mujoco_env"
_mujoco_registered = [False]


def _register_mujoco_once_imported() -> None:
    """MujocoEnv's handler, once something has imported MuJoCo (a MujocoEnv cannot exist before).
    Not at import: MuJoCo costs ~0.2 s and starts a second Python (``glfw`` reads its library's
    version) for every command, MuJoCo or not. Appended, as a builtin: a handler a user
    registered for a MujocoEnv subclass still comes first."""
    module = sys.modules.get(_MUJOCO_ENV_MODULE)
    if module is None or _mujoco_registered[0]:
        return
    _mujoco_registered[0] = True
    _HANDLERS.append((module.MujocoEnv, MUJOCO))


def _handler(obj: Any) -> StateHandler | None:
    _register_mujoco_once_imported()
    for cls, handler in _HANDLERS:
        if isinstance(obj, cls):
            return handler
    return None


def _layers(env: gym.Env) -> list[Any]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def capture_env(env: gym.Env) -> dict[str, Any]:
    """``{"layers": [...]}`` for a (wrapped) env, outermost first; ``{"unsupported": why}`` if any
    layer has no registered :class:`StateHandler`."""
    layers = []
    for layer in _layers(env):
        handler = _handler(layer)
        if handler is None:
            return {"unsupported": f"no state handler for {_type_name(layer)}"}
        try:
            layers.append({"type": _type_name(layer), "state": handler.capture(layer)})
        except Unencodable as e:  # a strict handler met a value it cannot store exactly
            return {"unsupported": f"{_type_name(layer)}: {e}"}
    return {"layers": layers}


def _sub_envs(vec: gym.vector.VectorEnv) -> list[gym.Env] | str:
    """The sub-envs of a vector env in this process, or why they cannot be reached."""
    from gymnasium.wrappers.vector import FlattenObservation

    while isinstance(vec, FlattenObservation):  # stateless vector wrappers
        vec = vec.env
    if not isinstance(vec, gym.vector.SyncVectorEnv):
        return f"{_type_name(vec)} (only a SyncVectorEnv's sub-envs can be captured)"
    return list(vec.envs)


def capture_vector_env(vec: gym.vector.VectorEnv) -> dict[str, Any]:
    """``{"envs": [capture_env(e) for each sub-env]}`` or ``{"unsupported": why}``."""
    envs = _sub_envs(vec)
    if isinstance(envs, str):
        return {"unsupported": envs}
    states = [capture_env(e) for e in envs]
    for s in states:
        if "unsupported" in s:
            return s
    return {"envs": states}


def restore_vector_env(vec: gym.vector.VectorEnv, saved: dict[str, Any]) -> str | None:
    """Put the sub-envs of ``vec`` (already reset) into the ``saved`` state.

    Returns None on success, else why it was impossible; the check happens before anything is
    changed, so on failure ``vec`` is as it was.
    """
    if "unsupported" in saved:
        return str(saved["unsupported"])
    envs = _sub_envs(vec)
    if isinstance(envs, str):
        return envs
    if len(envs) != len(saved["envs"]):
        return f"the checkpoint has {len(saved['envs'])} envs, this run {len(envs)}"
    plans = []
    for env, state in zip(envs, saved["envs"]):
        layers = _layers(env)
        names = [_type_name(layer) for layer in layers]
        saved_names = [layer["type"] for layer in state["layers"]]
        if names != saved_names:
            return f"env wrappers differ from the checkpoint's: {names} vs {saved_names}"
        for layer, layer_state in zip(layers, state["layers"]):
            handler = _handler(layer)
            assert handler is not None  # same types as when captured
            plans.append((handler, layer, layer_state["state"]))
    for handler, layer, state in plans:
        handler.restore(layer, state)
    return None


def failed_env_index(vec: gym.vector.VectorEnv, error: BaseException) -> int | None:
    """Which sub-env raised ``error`` during ``vec.step``, if it can be told.

    SyncVectorEnv steps its envs in a loop over ``i``; the traceback still holds that frame.
    AsyncVectorEnv closes the pipe of a worker that failed.
    """
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if isinstance(frame.f_locals.get("self"), gym.vector.SyncVectorEnv) and "i" in frame.f_locals:
            return int(frame.f_locals["i"])
    base = vec.unwrapped
    if isinstance(base, gym.vector.AsyncVectorEnv):
        dead = [i for i, p in enumerate(base.parent_pipes) if p is None]
        if len(dead) == 1:
            return dead[0]
    return None
