"""Flat parameter views and the conjugate-gradient solver used for F⁻¹g."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: Default number of CG iterations (Schulman et al. 2015, appendix C use 10).
CG_ITERS = 10
#: Default CG stopping tolerance on the squared residual relative to the right-hand side,
#: ‖b − Ax‖² ≤ tol·‖b‖²: relative, so that scaling b (the advantages, the rewards) by any k scales
#: x by k and stops CG at the same iterate.
CG_TOL = 1e-10


def flat_params(module: nn.Module) -> Tensor:
    """θ as one detached vector (a copy)."""
    return torch.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def set_flat_params(module: nn.Module, flat: Tensor) -> None:
    """Write θ back, bit-exactly, from a vector made by :func:`flat_params`.

    Copies in place (``vector_to_parameters`` would instead make the parameters views of
    ``flat``, so later changes to ``flat`` would silently change the module and vice versa).
    """
    with torch.no_grad():
        offset = 0
        for p in module.parameters():
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def flat_grad(
    output: Tensor,
    params: Iterable[nn.Parameter],
    *,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> Tensor:
    """∇ output w.r.t. ``params`` as one vector (zeros for parameters it does not touch);
    ``retain_graph`` and ``create_graph`` as in ``torch.autograd.grad``."""
    ps = list(params)
    grads = torch.autograd.grad(
        output, ps, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True
    )
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, ps)])


@dataclass(frozen=True)
class CGResult:
    """The solution of Ax = b and how the solve went."""

    x: Tensor
    #: ‖b − Ax‖ at the returned x (recomputed recursively by CG).
    residual: float
    iterations: int
    #: Why CG stopped: "converged", "max_iters", or "breakdown" (pᵀAp ≤ 0 or not finite:
    #: A is not positive definite along the search direction).
    status: str
    #: A x, accumulated from the products CG computed (x = Σ αᵢ pᵢ, so A x = Σ αᵢ A pᵢ): the
    #: step size needs xᵀAx, and this saves one more product. None where no x was formed.
    Ax: Tensor | None = None


def conjugate_gradient(
    Av: Callable[[Tensor], Tensor],
    b: Tensor,
    *,
    iters: int = CG_ITERS,
    tol: float = CG_TOL,
    precondition: Callable[[Tensor], Tensor] | None = None,
) -> CGResult:
    """Solve A x = b for symmetric positive-definite A given only v ↦ Av.

    Hestenes & Stiefel (1952); Nocedal & Wright, *Numerical Optimization*, Alg. 5.2, or with
    ``precondition`` (r ↦ M⁻¹r, M symmetric positive definite and ≈ A) Alg. 5.3, preconditioned
    CG: the same Krylov method in the metric of M, which converges in few iterations when M⁻¹A is
    close to I. Starts from x₀ = 0 (so the first iterate is along b, or M⁻¹b, and the result is
    deterministic) and stops when ‖r‖² ≤ ``tol``·‖b‖² (the residual of A x = b itself, relative) or after
    ``iters`` iterations. If the curvature pᵀAp along a search direction is not positive and
    finite, it stops and returns the last good iterate with status "breakdown" — for a Fisher
    matrix that means numerical trouble, never a valid solution; so does a preconditioner with
    rᵀM⁻¹r ≤ 0 or not finite (M not positive definite).

    Args:
        Av: v ↦ A v, for v of b's shape.
        b: right-hand side, shape ``[P]``.
        iters: maximum number of iterations (≥ 1).
        tol: tolerance on the squared residual norm relative to ‖b‖² (0: run all ``iters``).
        precondition: r ↦ M⁻¹r, or None for plain CG (M = I).
    """
    if iters < 1:
        raise ValueError(f"conjugate_gradient: iters must be >= 1, got {iters}")
    if not torch.isfinite(b).all():
        return CGResult(torch.zeros_like(b), float("nan"), 0, "breakdown")
    x = torch.zeros_like(b)
    ax = torch.zeros_like(b)
    r = b.clone()
    y = r if precondition is None else precondition(r)  # y = M⁻¹r
    p = y.clone()
    rr = torch.dot(r, r)
    stop = tol * rr  # ‖b‖² scaled: a relative tolerance
    ry = rr if precondition is None else torch.dot(r, y)
    status = "max_iters"
    done = 0
    for i in range(iters):
        if rr <= stop:
            status = "converged"
            break
        if not torch.isfinite(ry) or ry <= 0:  # only a preconditioner that is not PD gets here
            status = "breakdown"
            break
        Ap = Av(p)
        pAp = torch.dot(p, Ap)
        if not torch.isfinite(pAp) or pAp <= 0:
            status = "breakdown"
            break
        alpha = ry / pAp
        x = x + alpha * p
        ax = ax + alpha * Ap
        r = r - alpha * Ap
        rr = torch.dot(r, r)
        y = r if precondition is None else precondition(r)
        ry_new = rr if precondition is None else torch.dot(r, y)
        p = y + (ry_new / ry) * p
        ry = ry_new
        done = i + 1
    else:
        if rr <= stop:
            status = "converged"
    return CGResult(x, float(rr.sqrt()), done, status, ax)


def angle_degrees(u: Tensor, v: Tensor) -> float:
    """The angle between two vectors in degrees (nan if either is zero)."""
    denom = u.norm() * v.norm()
    if denom == 0:
        return float("nan")
    cos = (torch.dot(u, v) / denom).clamp(-1.0, 1.0)
    return float(torch.rad2deg(torch.arccos(cos)))
