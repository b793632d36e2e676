"""Environment sources (ids, objects, factories), exact env state, the EnvPool backend and the
step watchdog. Importing it registers the partially observed ids of :mod:`trustpg.envs.pomdp`."""

from trustpg.envs import pomdp as _pomdp  # noqa: F401  (registers trustpg/CartPoleNoVel-v1, ...)
