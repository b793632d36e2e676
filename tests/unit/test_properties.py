"""Property tests (hypothesis) on random inputs, issue 6. They complement the example-based tests
and the properties already in test_distributions (KL ≥ 0, KL(p‖p) = 0), test_advantages (GAE vs a
naive loop) and test_linalg (CG on random SPD matrices): here the line search and whole TRPO/NPG
updates on random policies and batches, the trust-region scale, and the exact encodings that
checkpoints rely on (env state, tensors, running statistics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from trustpg.core.curvature import NaturalDirection
from trustpg.core.distributions import kl
from trustpg.core.linalg import flat_params
from trustpg.core.line_search import backtracking_line_search
from trustpg.core.moments import RunningMeanStd
from trustpg.core.rules import NPG, TRPO
from trustpg.core.update import PolicyBatch, trust_region_scale
from trustpg.envs.envstate import decode, encode
from trustpg.io.checkpoint import load_checkpoint, save_checkpoint

from ._policies import KINDS, make_batch, make_policy

FAST = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**31 - 1)


@FAST
@given(
    seed=seeds,
    max_kl=st.floats(1e-4, 1.0),
    ratio=st.floats(0.1, 0.95),
    max_backtracks=st.integers(0, 12),
    answers=st.lists(st.tuples(st.floats(-10, 10) | st.sampled_from([math.nan, math.inf, -math.inf]),
                               st.floats(0, 2) | st.sampled_from([math.nan, math.inf])),
                     min_size=13, max_size=13),
)  # fmt: skip
def test_line_search_never_accepts_over_budget_and_restores_exactly(
    seed, max_kl, ratio, max_backtracks, answers
):
    policy = make_policy("gaussian", seed=seed % 1000)
    theta = flat_params(policy)
    full = torch.randn(theta.shape, generator=torch.Generator().manual_seed(seed), dtype=theta.dtype)
    it = iter(answers)
    res = backtracking_line_search(
        policy, theta, full, lambda: next(it), surrogate_old=0.0, max_kl=max_kl,
        backtrack_ratio=ratio, max_backtracks=max_backtracks,
    )  # fmt: skip
    if res.accepted:
        assert math.isfinite(res.kl) and res.kl <= max_kl and res.surrogate > 0.0
        assert torch.equal(flat_params(policy), theta + ratio**res.backtracks * full)
        assert answers.index((res.surrogate, res.kl)) <= res.backtracks  # the first that qualifies
    else:
        assert torch.equal(flat_params(policy), theta)
        assert not any(math.isfinite(s) and math.isfinite(k) and k <= max_kl and s > 0 for s, k in
                       answers[: max_backtracks + 1])  # fmt: skip


@FAST
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 10_000), max_kl=st.floats(1e-4, 0.5),
       adv_scale=st.floats(1e-3, 1e3), n=st.integers(2, 64))  # fmt: skip
def test_trpo_update_keeps_measured_kl_within_budget_or_restores(kind, seed, max_kl, adv_scale, n):
    policy = make_policy(kind, seed=seed)
    b = make_batch(policy, n=n, seed=seed + 1)
    batch = PolicyBatch(b.obs, b.actions, b.advantages * adv_scale)
    theta = flat_params(policy)
    with torch.no_grad():
        old = policy(batch.obs)
    stats = TRPO(max_kl=max_kl, direction=NaturalDirection(damping=1e-3)).update(policy, batch)
    after = flat_params(policy)
    assert torch.isfinite(after).all()
    if stats.skipped:
        assert torch.equal(after, theta)
    else:
        with torch.no_grad():
            measured = float(kl(old, policy(batch.obs)).mean())
        assert measured <= max_kl * (1 + 1e-9)
        assert stats.surrogate_after > stats.surrogate_before


@FAST
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 10_000), max_kl=st.floats(1e-5, 0.1))
def test_npg_predicted_kl_is_the_budget(kind, seed, max_kl):
    policy = make_policy(kind, seed=seed)
    stats = NPG(max_kl=max_kl, direction=NaturalDirection(damping=1e-3)).update(policy, make_batch(policy))
    assert not stats.skipped and math.isclose(stats.predicted_kl, max_kl, rel_tol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", ["trpo", "npg"])
def test_the_step_does_not_depend_on_the_scale_of_the_advantages(kind, rule):
    """docs/theory.md: β = sqrt(2δ / g̃ᵀFg̃) divides the scale of g out, so advantages times k give
    the same step. With k a power of two every intermediate scales exactly, so θ is bit-identical;
    CG's tolerance is relative (an absolute one stopped CG at x = 0 for small g: a skipped update)."""
    thetas = []
    for k in (2.0**-30, 1.0, 2.0**12):
        policy = make_policy(kind, seed=3)
        b = make_batch(policy, n=32, seed=4)
        make = TRPO if rule == "trpo" else NPG
        stats = make(max_kl=0.01, direction=NaturalDirection(damping=1e-3)).update(
            policy, PolicyBatch(b.obs, b.actions, b.advantages * k)
        )
        assert not stats.skipped, (k, stats.skip_reason)
        thetas.append(flat_params(policy))
    assert all(torch.equal(t, thetas[1]) for t in thetas), [
        float((t - thetas[1]).abs().max()) for t in thetas
    ]


@FAST
@given(seed=seeds, n=st.integers(1, 20), max_kl=st.floats(1e-6, 10.0))
def test_trust_region_scale_puts_the_quadratic_model_on_the_budget(seed, n, max_kl):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    fisher = a @ a.T + 1e-3 * torch.eye(n, dtype=torch.float64)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    beta = trust_region_scale(x, fisher @ x, max_kl)
    assert math.isclose(0.5 * beta**2 * float(x @ fisher @ x), max_kl, rel_tol=1e-9)
    assert math.isnan(trust_region_scale(x, -(fisher @ x), max_kl))


numeric_dtypes = st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.uint8, np.bool_])


@FAST
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=5)
    | st.floats(allow_nan=False)
    | numeric_dtypes.flatmap(lambda d: arrays(d, array_shapes(min_dims=0, max_dims=3))),
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
))  # fmt: skip
def test_env_state_encoding_round_trips_exactly_through_json(value):
    back = decode(json.loads(json.dumps(encode(value))))
    _assert_identical(back, value)


def _assert_identical(a, b):
    assert type(a) is type(b)
    if isinstance(b, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    elif isinstance(b, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_identical(x, y)
    elif isinstance(b, dict):
        assert a.keys() == b.keys()
        for k in b:
            _assert_identical(a[k], b[k])
    else:
        assert a == b


@settings(max_examples=10, deadline=None)  # each example writes and fsyncs a file
@given(tensors=st.dictionaries(
    st.text("abcdefgh.", min_size=1, max_size=6),
    st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_]).flatmap(
        lambda d: arrays(d, array_shapes(min_dims=0, max_dims=3, min_side=0))),
    min_size=1, max_size=4,
), meta=st.dictionaries(st.text(max_size=5), st.integers(-(2**53), 2**53) | st.floats(allow_nan=False)
                       | st.text()))  # fmt: skip
def test_checkpoint_round_trips_tensors_and_meta_exactly(tmp_path_factory, tensors, meta):
    path = tmp_path_factory.mktemp("ckpt") / "c"
    torch_tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    meta = {k: v for k, v in meta.items() if k not in ("format_version", "sha256")}
    loaded, loaded_meta = load_checkpoint(save_checkpoint(path, torch_tensors, meta), allow_non_finite=True)
    assert loaded.keys() == torch_tensors.keys()
    for k in loaded:  # bit-exact, NaN payloads included (torch.equal treats NaN != NaN)
        a, b = loaded[k], torch_tensors[k]
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.numpy().tobytes() == b.numpy().tobytes()
    assert {k: v for k, v in loaded_meta.items() if k != "format_version"} == meta


@FAST
@given(chunks=st.lists(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)),
                              elements=st.floats(-1e3, 1e3)), min_size=1, max_size=5))  # fmt: skip
def test_running_mean_std_matches_numpy_over_the_concatenation(chunks):
    rms = RunningMeanStd((3,))
    for c in chunks:
        rms.update(c)
    allx = np.concatenate(chunks)
    np.testing.assert_allclose(rms.mean, allx.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rms.var, allx.var(0), rtol=1e-7, atol=1e-6)
    assert rms.count == len(allx)
