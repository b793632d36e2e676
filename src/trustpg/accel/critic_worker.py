"""The critic fit in NumPy, run in a child process while the parent steps the environments.

Why a process: a thread that issues many small PyTorch/NumPy calls takes and releases the GIL
thousands of times per fit, and each hand-over stalls the main thread, which steps MuJoCo through
Python (benchmarks/contention.py: Hopper stepping 1.25-1.38× slower next to such a thread, 1.00×
next to a process doing the same work). This file imports only NumPy, so the child costs ~30 MB
instead of the ~220 MB of a PyTorch import; it is run as ``python -m trustpg.accel.critic_worker``
and imports nothing of ``trustpg`` but the NumPy MLP kernel (:mod:`trustpg.accel.np_mlp`; the
package ``__init__`` files are light), an import-linter contract in pyproject.toml.

The math is the kernel's MSE gradient and Adam step (PyTorch's Adam formula), on the float32
parameters the parent sends. The parent draws the minibatch permutations from its torch
generator, so the minibatches are exactly those of the in-process fit; results agree with it to
float32 rounding (tests/unit/test_critic_process.py). Protocol: the parent writes pickled ``dict``
jobs to stdin, the child answers each with a pickled ``dict`` on stdout, preceded by its length
(8 bytes, little-endian) so that the parent can read it with a deadline; EOF ends the child.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import sys
import time
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy loads its BLAS: one thread, deterministic

import numpy as np  # noqa: E402

from trustpg.accel import np_mlp  # noqa: E402
from trustpg.accel.children import leave_sigint_to_parent  # noqa: E402


def fit(job: dict[str, Any]) -> dict[str, Any]:
    """One critic fit: Adam on minibatches of ``job["perms"]`` (one permutation per epoch).

    job: ``params`` flat float32 [P] in the order W₁, b₁, W₂, b₂, …; ``shapes`` of those tensors;
    ``activation`` (and ELU's ``alpha``); ``obs`` [B, D]; ``returns`` [B]; ``perms`` [epochs, B];
    ``minibatch_size``;
    ``lr``, ``betas``, ``eps``; Adam state ``exp_avg``, ``exp_avg_sq`` [P] and ``step`` (float).
    Returns the new ``params``, ``exp_avg``, ``exp_avg_sq``, ``step`` and the full-batch losses
    ``before`` and ``after``.
    """
    params = np.array(job["params"], dtype=np.float32)
    m = np.array(job["exp_avg"], dtype=np.float32)
    v = np.array(job["exp_avg_sq"], dtype=np.float32)
    grad = np.zeros_like(params)
    grads = _views(grad, job["shapes"])
    layers = [(w.T, b) for w, b in _views(params, job["shapes"])]  # the kernel's (Wᵀ, b)
    act, alpha, obs, ret = (
        job["activation"],
        float(job.get("alpha", 1.0)),
        np.asarray(job["obs"], np.float32),
        np.asarray(job["returns"], np.float32),
    )
    lr, (beta1, beta2), eps = job["lr"], job["betas"], job["eps"]
    step = float(job["step"])
    before = _loss(layers, act, alpha, obs, ret)
    mb = int(job["minibatch_size"])
    for perm in job["perms"]:
        xs, ys = obs[perm], ret[perm]
        for start in range(0, len(perm), mb):
            np_mlp.mse_gradient(layers, act, xs[start : start + mb], ys[start : start + mb], grads, alpha)
            step += 1.0
            np_mlp.adam_step(params, grad, m, v, step, lr, beta1, beta2, eps)
    return {"params": params, "exp_avg": m, "exp_avg_sq": v, "step": step,
            "before": before, "after": _loss(layers, act, alpha, obs, ret)}  # fmt: skip


def _views(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[tuple[np.ndarray, np.ndarray]]:
    out, i, tensors = [], 0, []
    for shape in shapes:
        n = int(np.prod(shape))
        tensors.append(flat[i : i + n].reshape(shape))
        i += n
    for k in range(0, len(tensors), 2):
        out.append((tensors[k], tensors[k + 1]))
    return out


def _loss(layers: list[np_mlp.Layer], act: str, alpha: float, obs: np.ndarray, ret: np.ndarray) -> float:
    pred = np_mlp.forward(layers, act, obs, alpha)[-1][:, 0]
    return float(np.mean((pred.astype(np.float64) - ret) ** 2))


def main() -> None:
    leave_sigint_to_parent()  # the parent ends us (EOF on stdin), not a terminal's Ctrl-C
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            job = pickle.load(stdin)
        except EOFError:
            return
        t0 = time.perf_counter()
        try:
            reply = fit(job)
        except Exception as e:  # reported to the parent, which fits in-process instead
            reply = {"error": f"{type(e).__name__}: {e}"}
        reply["seconds"] = time.perf_counter() - t0  # the parent's deadlines scale with it
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            stdout.write(struct.pack("<Q", len(data)) + data)
            stdout.flush()
        except BrokenPipeError:  # the parent is gone (exited without closing us): end quietly
            with contextlib.suppress(OSError):
                os.close(stdout.fileno())
            return


if __name__ == "__main__":
    main()
