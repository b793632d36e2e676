"""Image-observation envs trustpg knows how to make from an id: MinAtar and ALE Atari.

* ``MinAtar/<Game>-v0|v1`` (``pip install minatar``; Young & Tian 2019): 10×10×C boolean frames.
  Their ids are registered here on first use (MinAtar registers them only on request).
* ``ALE/<Game>-v5`` (``pip install ale-py``): made with ``frameskip=1`` and wrapped in the standard
  DQN preprocessing (Mnih et al. 2015; Machado et al. 2018): up to 30 no-op starts, frame skip 4
  with max-pooling of the last two frames, 84×84 grayscale, and a stack of the last 4 frames
  (``gymnasium.wrappers.AtariPreprocessing`` and ``FrameStackObservation``). Rewards are not
  clipped (trustpg's reward normalisation scales them instead), so reported returns are the game's.

A checkpoint holds the full state of both (:mod:`trustpg.envs.envstate`), so a resumed run continues
mid-episode bit for bit: for MinAtar the game's attributes and its ``RandomState`` generators
(sticky actions, spawns), for ALE the emulator state with its RNG (``cloneState(include_rng=True)``),
the env's ``np_random`` (no-op starts) and the action a sticky step repeats, which ALE keeps outside
its state (:func:`_sticky_action`).

Pixels stay ``uint8`` (MinAtar's booleans become 0/1 ``uint8``) through collection and in the batch;
the CNN (:mod:`trustpg.nets.cnn`) scales them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from trustpg.envs.envstate import ATTRIBUTES, StateHandler, Unencodable, decode, encode, register_env_state

ATARI_STACK = 4


def register_known(env_id: str) -> str | None:
    """Register the ids of MinAtar / ALE if ``env_id`` is one of theirs and the package is installed;
    returns what to install when it is not (else None)."""
    if env_id.startswith("MinAtar/"):
        try:
            minatar_gym = importlib.import_module("minatar.gym")
        except ImportError:
            return "pip install minatar"
        if env_id not in gym.registry:
            minatar_gym.register_envs()
        register_env_state(minatar_gym.BaseEnv, MINATAR)
    elif env_id.startswith("ALE/"):
        try:
            ale_py = importlib.import_module("ale_py")
        except ImportError:
            return "pip install ale-py"
        gym.register_envs(ale_py)
        register_env_state(ale_py.env.AtariEnv, ATARI)
    return None


def is_atari(env_id: str | None) -> bool:
    return env_id is not None and env_id.startswith("ALE/")


def make_kwargs(env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``gymnasium.make`` kwargs for ``env_id``: ALE frames one at a time (the wrapper skips)."""
    return {"frameskip": 1, **kwargs} if is_atari(env_id) else kwargs


def standard_wrappers(env_id: str | None) -> list[Callable[[gym.Env], gym.Env]]:
    """The wrappers an env made from ``env_id`` gets (the Atari preprocessing), outermost last."""
    if not is_atari(env_id):
        return []

    def preprocess(env: gym.Env) -> gym.Env:
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True, terminal_on_life_loss=False
        )
        return gym.wrappers.FrameStackObservation(env, ATARI_STACK)

    return [preprocess]


def _strict_attributes(obj: Any) -> dict[str, Any]:
    """Every attribute of a MinAtar game object, exactly; a ``RandomState`` by its state. Raises
    :class:`Unencodable` naming the attribute otherwise (then the run falls back to fresh episodes)."""
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if name == "env":  # the game object inside MinAtar's Environment: captured on its own
            continue
        try:
            if isinstance(value, np.random.RandomState):
                out[name] = {"random_state": encode(value.get_state(legacy=True))}
            else:
                out[name] = {"value": encode(value)}
        except Unencodable as e:
            raise Unencodable(f"{type(obj).__name__}.{name} ({e})") from None
    return out


def _restore_strict(obj: Any, state: dict[str, Any]) -> None:
    for name, saved in state.items():
        if "random_state" in saved:  # in place: MinAtar's objects may share one generator
            getattr(obj, name).set_state(decode(saved["random_state"]))
        else:
            setattr(obj, name, decode(saved["value"]))


def _capture_minatar(env: Any) -> dict[str, Any]:
    return {"game": _strict_attributes(env.game), "inner": _strict_attributes(env.game.env)}


def _restore_minatar(env: Any, state: dict[str, Any]) -> None:
    _restore_strict(env.game, state["game"])
    _restore_strict(env.game.env, state["inner"])


# Sticky actions (Machado et al. 2018): each frame ALE repeats the action it took last with
# probability p instead of the one it is given. That last action lives in ALE's environment object,
# not in cloneState's state (ALE resets it to NOOP on reset), so a restored emulator would repeat
# its own. It is found at capture by replaying and set on both sides by playing it.
_PROBE_FRAMES = 16  # a repeat run longer than this has probability p**16 (2e-10 at ALE's p = 0.25)
_SET_FRAMES = 32  # frames of an action after which ALE has taken it but with probability p**32


def _play(ale: Any, action: Any, frames: int) -> None:
    for _ in range(frames):
        ale.act(action)


def _make_last_action(ale: Any, saved: Any, action: Any) -> None:
    """Leave ``ale`` in state ``saved`` with ``action`` as the last action taken. Twice, so that
    what the emulator keeps outside its state (frame buffers) comes from the same frames on every
    side: the first pass starts from whatever action was last, the second from ``action``."""
    for _ in range(2):
        _play(ale, action, _SET_FRAMES)
        ale.restoreState(saved)


def _sticky_action(env: Any, saved: Any) -> int:
    """The action ``env``'s emulator would repeat on a sticky frame, or one with the same effect:
    from ``saved``, NOOP is played for ``_PROBE_FRAMES`` frames after making each candidate the
    last action, and the candidate whose emulator state matches the env's own is taken (ALE's
    random draws are part of ``saved``, so the repeated frames are the same ones every time)."""
    from ale_py import Action

    ale = env.ale
    _play(ale, Action.NOOP, _PROBE_FRAMES)
    truth = ale.cloneState(include_rng=True).serialize()
    ale.restoreState(saved)
    actions = getattr(env, "_action_set", None)  # the game's; else all 18 (a superset)
    candidates = dict.fromkeys([Action.NOOP, *(ale.getLegalActionSet() if actions is None else actions)])
    for action in candidates:
        _play(ale, action, _SET_FRAMES)
        ale.restoreState(saved)
        _play(ale, Action.NOOP, _PROBE_FRAMES)
        same = ale.cloneState(include_rng=True).serialize() == truth
        ale.restoreState(saved)
        if same:
            return int(action.value)
    raise Unencodable("ALE's last action (no action of the game's set replays its sticky frames)")


def _capture_atari(env: Any) -> dict[str, Any]:
    state = ATTRIBUTES.capture(env)
    saved = env.ale.cloneState(include_rng=True)
    state["ale"] = encode(np.frombuffer(saved.serialize(), dtype=np.uint8))
    if env.ale.getFloat("repeat_action_probability") > 0:
        state["sticky_action"] = _sticky_action(env, saved)
        _make_last_action(env.ale, saved, _action(state["sticky_action"]))  # as a restore leaves it
    return state


def _action(value: int) -> Any:
    from ale_py import Action

    return Action(value)


def _restore_atari(env: Any, state: dict[str, Any]) -> None:
    from ale_py import ALEState

    ATTRIBUTES.restore(env, state)
    saved = ALEState(decode(state["ale"]).tobytes())
    env.ale.restoreState(saved)
    if "sticky_action" in state:  # absent: captured without sticky actions, or before this was kept
        _make_last_action(env.ale, saved, _action(state["sticky_action"]))


MINATAR = StateHandler(_capture_minatar, _restore_minatar)
ATARI = StateHandler(_capture_atari, _restore_atari)
