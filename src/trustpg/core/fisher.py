"""The Fisher information matrix of a policy, dense and matrix-free.

F = E_s E_{a~π_θ}[∇θ log π_θ(a|s) ∇θ log π_θ(a|s)ᵀ] = ∇²_θ' E_s[KL(π_θ(·|s) ‖ π_θ'(·|s))] at θ'=θ
(Kakade 2002; Schulman et al. 2015, appendix C). With φ(s; θ) the distribution parameters a
policy outputs, J = ∂φ/∂θ and M(φ) the distribution's own metric, F = E_s[Jᵀ M J]
(Martens 2020, §9.2), which is what ``method="analytic"`` applies: one jvp and one vjp, exact
in expectation over actions for every family here.

``policy`` is any ``torch.nn.Module`` whose ``forward(obs)`` returns a
:class:`trustpg.core.distributions.Distribution`; θ is ``parameters_to_vector(policy.parameters())``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp

from trustpg.core.distributions import Distribution, Params, detach, kl
from trustpg.core.linalg import flat_grad
from trustpg.core.names import FVPMethod


def _param_function(
    policy: nn.Module, obs: Tensor
) -> tuple[Callable[..., Params], tuple[Tensor, ...], list[tuple[int, ...]]]:
    """φ as a function of the policy's parameters, the current parameters, their shapes."""
    names = [n for n, _ in policy.named_parameters()]
    primals = tuple(p.detach() for _, p in policy.named_parameters())

    def phi(*ps: Tensor) -> Params:
        dist: Distribution = functional_call(policy, dict(zip(names, ps)), (obs,))
        return dist.params

    return phi, primals, [tuple(p.shape) for p in primals]


def _unflatten(v: Tensor, shapes: list[tuple[int, ...]]) -> tuple[Tensor, ...]:
    out, i = [], 0
    for s in shapes:
        n = 1
        for d in s:
            n *= d
        out.append(v[i : i + n].view(s))
        i += n
    return tuple(out)


def _check_vector(v: Tensor, n_params: int) -> None:
    if v.shape != (n_params,):
        raise ValueError(f"v must be a flat vector of shape ({n_params},), got {tuple(v.shape)}")


def _flatten(ts: tuple[Tensor, ...]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def fisher_matrix(policy: nn.Module, obs: Tensor) -> Tensor:
    """Dense F = (1/B) Σ_s J_sᵀ M_s J_s, shape ``[P, P]``, for small models and tests.

    Args:
        policy: module mapping ``obs`` to a distribution.
        obs: states s, shape ``[B, ...]``; the expectation over s is the mean over B.
    """
    phi, primals, _ = _param_function(policy, obs)
    with torch.no_grad():
        dist = policy(obs)
    outputs = dist.params
    batch = outputs[0].shape[0]
    jac = jacrev(phi, argnums=tuple(range(len(primals))))(*primals)
    # J: [B, K, P] with K the per-sample size of φ and P the number of parameters.
    rows = []
    for out, per_param in zip(outputs, jac):
        k = out[0].numel()
        rows.append(torch.cat([j.reshape(batch, k, -1) for j in per_param], dim=-1))
    J = torch.cat(rows, dim=1)
    K = J.shape[1]
    sizes = [o[0].numel() for o in outputs]
    cols = []
    for k in range(K):
        e = torch.zeros(batch, K, dtype=J.dtype)
        e[:, k] = 1.0
        tangents = tuple(t.reshape(o.shape) for t, o in zip(torch.split(e, sizes, dim=1), outputs))
        cols.append(torch.cat([m.reshape(batch, -1) for m in dist.metric(tangents)], dim=1))
    M = torch.stack(cols, dim=-1)  # [B, K, K]
    return torch.einsum("bkp,bkl,blq->pq", J, M, J) / batch


def fisher_vector_product(
    policy: nn.Module,
    obs: Tensor,
    *,
    damping: float = 0.0,
    method: FVPMethod = "analytic",
) -> Callable[[Tensor], Tensor]:
    """v ↦ (F + damping·I) v at the current parameters, without forming F.

    ``"analytic"``: Jᵀ (M (J v)) / B, with J v and Jᵀu from one recorded forward pass by two
    autograd vjps, for every policy (a hand-written product for the default MLP actor bought ~2 %
    end to end and was deleted, docs/performance.md).
    ``"kl_hessian"``: ∇θ(∇θ mean KL(π_old ‖ π_θ) · v) at θ = θ_old (Pearlmutter 1994), the
    classic TRPO implementation. Both equal ``fisher_matrix(policy, obs) @ v`` + damping·v.

    Args:
        policy: module mapping ``obs`` to a distribution; its parameters define θ.
        obs: states, shape ``[B, ...]``.
        damping: λ ≥ 0 added to the diagonal (Tikhonov damping, Martens 2010).
        method: "analytic" (default, cheaper) or "kl_hessian".
    Returns:
        A function of a flat vector ``v`` of shape ``[P]`` returning ``[P]``; it raises
        ``ValueError`` for any other shape.
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    if method == "analytic":
        return _analytic_fvp(policy, obs, damping)
    if method == "kl_hessian":
        return _kl_hessian_fvp(policy, obs, damping)
    raise ValueError(f"method must be 'analytic' or 'kl_hessian', got {method!r}")


def fisher_quadratic(
    policy: nn.Module, obs: Tensor, v: Tensor, *, damping: float = 0.0, dist: Distribution | None = None
) -> float:
    """vᵀ(F + λI)v = (1/B) Σ_s (J_s v)ᵀ M_s (J_s v) + λ‖v‖², exact, from one product J v (two
    backward passes over one recorded forward: J v = ∂/∂u [(Jᵀu)·v], as the analytic FVP). All a
    step size β = sqrt(2δ / vᵀFv) needs of F (TRPO, Appendix C).

    Args:
        policy: module mapping ``obs`` to a distribution; its parameters define θ.
        obs: states, shape ``[B, ...]``.
        v: a flat vector of shape ``[P]``.
        damping: λ ≥ 0.
        dist: ``policy(obs)`` still in its autograd graph, if the caller has it (saves the forward).
    """
    params = list(policy.parameters())
    _check_vector(v, sum(p.numel() for p in params))
    dist = policy(obs) if dist is None else dist
    phi = dist.params
    dummies = [torch.zeros_like(x, requires_grad=True) for x in phi]
    jt_u = torch.autograd.grad(
        _dot(phi, dummies), params, create_graph=True, retain_graph=True, allow_unused=True
    )
    used = [i for i, g in enumerate(jt_u) if g is not None]
    vs = _unflatten(v, [tuple(p.shape) for p in params])
    jv = torch.autograd.grad(
        _dot([jt_u[i] for i in used], [vs[i] for i in used]),
        dummies,
        allow_unused=True,
    )
    jv = tuple(torch.zeros_like(x) if t is None else t.detach() for t, x in zip(jv, phi))
    mjv = dist.with_params(tuple(x.detach() for x in phi)).metric(jv)
    # The mean over states: φ's leading dimension (a recurrent policy maps N sequences to N·T).
    quad = sum(float((a * b).sum()) for a, b in zip(jv, mjv)) / phi[0].shape[0]
    return quad + damping * float(torch.dot(v, v))


def fisher_diagonal_of(
    policy: nn.Module, obs: Tensor, params: Sequence[nn.Parameter], dist: Distribution | None = None
) -> Tensor:
    """The exact diagonal of F restricted to ``params`` (a subset of the policy's parameters),
    flat in their order: F_jj = e_jᵀ F e_j, one Fisher-vector product over ``params`` alone per
    entry. Autograd only traverses the part of the graph between ``params`` and φ, so this is
    cheap for parameters near the output (a Gaussian's log σ) and costly for many deep ones.
    ``dist``: ``policy(obs)`` in the autograd graph, if the caller has it (saves a forward pass)."""
    ps = list(params)
    if not ps:
        return torch.zeros(0)
    fvp = _analytic_fvp(policy, obs, 0.0, ps, dist)
    n = sum(p.numel() for p in ps)
    out = torch.empty(n, dtype=ps[0].dtype)
    for j in range(n):
        e = torch.zeros(n, dtype=ps[0].dtype)
        e[j] = 1.0
        out[j] = fvp(e)[j]
    return out


def _analytic_fvp(
    policy: nn.Module,
    obs: Tensor,
    damping: float,
    only: Sequence[nn.Parameter] | None = None,
    dist: Distribution | None = None,
) -> Callable[[Tensor], Tensor]:
    # One forward pass and one differentiable vjp u ↦ Jᵀu are recorded here; each product then
    # costs two backward passes over that graph and no forward pass: J v = ∂/∂u [(Jᵀu)·v]
    # (the "double-vjp" trick, Townsend 2017), then Jᵀ(M J v)/B. This is ~2× cheaper than
    # torch.func.jvp + vjp, which re-runs the forward pass per product (docs/performance.md).
    params = list(policy.parameters()) if only is None else list(only)
    dist = policy(obs) if dist is None else dist
    phi = dist.params
    metric = dist.with_params(tuple(x.detach() for x in phi))
    dummies = [torch.zeros_like(x, requires_grad=True) for x in phi]
    # Products are taken as gradients of scalars (Σ x·u rather than grad_outputs=u): the same
    # numbers, and torch.autograd.grad then does not import its symbolic-shape checker (sympy,
    # ~75 MB), which a training run otherwise never needs (tests/unit/test_optim.py).
    jt_u = torch.autograd.grad(_dot(phi, dummies), params, create_graph=True, allow_unused=True)
    used = [i for i, g in enumerate(jt_u) if g is not None]
    shapes = [tuple(p.shape) for p in params]
    batch = phi[0].shape[0]  # states, as in fisher_matrix (not obs rows: see trustpg.nets.recurrent)
    n_params = sum(p.numel() for p in params)

    def fvp(v: Tensor) -> Tensor:
        _check_vector(v, n_params)
        vs = _unflatten(v, shapes)
        jv = torch.autograd.grad(
            _dot([jt_u[i] for i in used], [vs[i] for i in used]), dummies,
            retain_graph=True, allow_unused=True,
        )  # fmt: skip
        jv = tuple(torch.zeros_like(x) if t is None else t for t, x in zip(jv, phi))
        mjv = metric.metric(jv)
        out = torch.autograd.grad(
            _dot(phi, [m / batch for m in mjv]), params, retain_graph=True, allow_unused=True
        )
        flat = torch.cat([(torch.zeros_like(p) if o is None else o).reshape(-1)
                          for o, p in zip(out, params)])  # fmt: skip
        return flat + damping * v

    return fvp


def _dot(xs: Sequence[Tensor], us: Sequence[Tensor]) -> Tensor:
    """Σᵢ ⟨xᵢ, uᵢ⟩: its gradient with respect to what ``xᵢ`` depend on is Jᵀu."""
    total = (xs[0] * us[0]).sum()
    for x, u in zip(xs[1:], us[1:]):
        total = total + (x * u).sum()
    return total


def functorch_fvp(policy: nn.Module, obs: Tensor, damping: float = 0.0) -> Callable[[Tensor], Tensor]:
    """Jᵀ M J v with ``torch.func.jvp`` and a linearised ``vjp``: the same product as the
    default analytic FVP, kept as an independent reference (it re-runs the forward per call)."""
    phi, primals, shapes = _param_function(policy, obs)
    # [:2]: torch annotates vjp/jvp as returning a 2- or 3-tuple (3 with has_aux=True) unnarrowed.
    outputs, vjp_fn = vjp(phi, *primals)[:2]
    metric = policy(obs).with_params(tuple(o.detach() for o in outputs))
    batch = outputs[0].shape[0]

    def fvp(v: Tensor) -> Tensor:
        jv = jvp(phi, primals, _unflatten(v, shapes))[1]
        mjv = metric.metric(jv)
        jtmjv = vjp_fn(tuple(m / batch for m in mjv))
        return _flatten(jtmjv) + damping * v

    return fvp


def _kl_hessian_fvp(policy: nn.Module, obs: Tensor, damping: float) -> Callable[[Tensor], Tensor]:
    params = list(policy.parameters())
    new = policy(obs)
    mean_kl = kl(detach(new), new).mean()
    grad_kl = flat_grad(mean_kl, params, create_graph=True)

    def fvp(v: Tensor) -> Tensor:
        _check_vector(v, grad_kl.numel())
        return flat_grad(torch.dot(grad_kl, v), params, retain_graph=True) + damping * v

    return fvp
