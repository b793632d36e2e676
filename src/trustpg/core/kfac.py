"""K-FAC: a Kronecker-factored approximation of the Fisher, cheap to invert (Martens & Grosse
2015; in a trust region, ACKTR: Wu et al. 2017).

For a Linear layer z = W̄ā with W̄ = [W b] and ā = [a; 1], the per-state score for W̄ is g āᵀ
(g = ∂ log π/∂z), so its Fisher block is E[(ā āᵀ) ⊗ (g gᵀ)] ≈ E[ā āᵀ] ⊗ E[g gᵀ] = A ⊗ G
(row-major θ, as torch stores W: G ⊗ A). Blocks of different layers are taken as independent
(block diagonal). The damped block inverts in factors:

    ((G + λ_G I) ⊗ (A + λ_A I))⁻¹ vec(V) = vec((G + λ_G I)⁻¹ V (A + λ_A I)⁻¹),

with π-damping λ_A = π√λ, λ_G = √λ/π, π = sqrt((tr A / d_A) / (tr G / d_G)) (Martens & Grosse
2015, §6.3). G is estimated from actions sampled from the policy itself (the true Fisher, not the
empirical one); A and G are running averages over updates (state: saved with checkpoints).
Parameters outside factorable Linear layers (a Gaussian's log σ, custom modules) get the exact
diagonal of their Fisher block.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from trustpg.core.curvature import Solution, finish, reference_angle
from trustpg.core.distributions import Distribution
from trustpg.core.fisher import FVPMethod, fisher_diagonal_of, fisher_vector_product
from trustpg.core.layers import exact_output_grads, param_slices, record_linears, sampled_output_grads
from trustpg.core.linalg import CG_TOL, conjugate_gradient
from trustpg.core.update import PolicyBatch

#: The running averages' decay ε: A ← ε A + (1 − ε) A_batch.
KFAC_DECAY = 0.9


# -- pure math -------------------------------------------------------------------------------
def kronecker_factors(a_bar: Tensor, g: Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """A = Σᵢ āᵢāᵢᵀ / B and G = Σⱼ gⱼgⱼᵀ / B (``a_bar`` ``[B, in+1]``; ``g`` ``[N, out]``, N = B
    for sampled targets or K·B for exact ones)."""
    return a_bar.T @ a_bar / batch, g.T @ g / batch


def pi_damping(A: Tensor, G: Tensor, damping: float) -> tuple[float, float]:
    """(λ_A, λ_G) with λ_A λ_G = λ, split by π = sqrt((tr A/d_A) / (tr G/d_G)) so that each
    factor is damped in proportion to its own scale (Martens & Grosse 2015, §6.3)."""
    ta = float(torch.trace(A)) / A.shape[0]
    tg = float(torch.trace(G)) / G.shape[0]
    pi = math.sqrt(ta / tg) if ta > 0 and tg > 0 else 1.0
    root = math.sqrt(damping)
    return pi * root, root / pi


def kron_solve(A: Tensor, G: Tensor, V: Tensor, lam_A: float, lam_G: float) -> Tensor:
    """(G + λ_G I)⁻¹ V (A + λ_A I)⁻¹ for V ``[out, in+1]``: the damped Kronecker block's inverse
    applied to V without forming the ``[out·(in+1)]²`` matrix (factors are symmetric PD)."""
    left = torch.cholesky_solve(V, _chol(G, lam_G))
    return torch.cholesky_solve(left.T, _chol(A, lam_A)).T


def _chol(M: Tensor, lam: float) -> Tensor:
    """The Cholesky factor of M + λI."""
    return torch.linalg.cholesky(M + lam * torch.eye(M.shape[0], dtype=M.dtype))


def running_average(old: Tensor | None, new: Tensor, decay: float) -> Tensor:
    """ε·old + (1 − ε)·new; ``new`` when there is no ``old`` yet (the first update)."""
    return new if old is None else decay * old + (1.0 - decay) * new


# -- the back end ----------------------------------------------------------------------------
@dataclass
class KFACState:
    """Running factors per factorable layer (in module order), the exact-diagonal block of the
    other parameters, and the number of updates (it seeds the sampled actions)."""

    factors: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    diagonal: Tensor | None = None
    updates: int = 0


@dataclass(frozen=True)
class KFACDirection:
    """``kfac``: g̃ from Kronecker-factored blocks; its state is shared by copies of a rule
    (``with_kl_budget``) and saved through :meth:`state_dict`."""

    damping: float = 0.1
    decay: float = KFAC_DECAY
    fvp_stride: int = 1
    angle_states: int = 1024
    #: Seeds the actions sampled for G (with the update count: one seed → one run).
    seed: int = 0
    #: "sampled": one action per state from π (the standard estimator); "exact": the expectation
    #: over actions in closed form (K backward passes; for tests and small action spaces).
    targets: Literal["sampled", "exact"] = "sampled"
    state: KFACState = field(default_factory=KFACState, compare=False, repr=False)

    def solve(self, policy: nn.Module, batch: PolicyBatch, g: Tensor) -> Solution:
        t0 = time.perf_counter()
        dist, inverse = self.refresh(policy, batch.obs[:: self.fvp_stride])
        x = inverse(g)
        return finish(policy, batch, g, x, t0, damping=self.damping, fvp_stride=self.fvp_stride,
                      angle_states=self.angle_states, dist=dist)  # fmt: skip

    def refresh(self, policy: nn.Module, obs: Tensor) -> tuple[Distribution, Callable[[Tensor], Tensor]]:
        """Fold this batch's factors into the running averages (one update), and return the
        policy's distribution on ``obs`` and v ↦ K⁻¹v, K the damped block-diagonal K-FAC matrix
        (symmetric positive definite: ``kfac`` uses K⁻¹g, ``kfac-cg`` K as CG's preconditioner)."""
        dist, records = record_linears(policy, obs)
        if self.targets == "exact":
            grads = exact_output_grads(dist, records)
        else:
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.state.updates) % 2**62)
            grads = sampled_output_grads(dist, records, gen)
        st = self.state
        if st.factors and len(st.factors) != len(records):
            raise ValueError(f"K-FAC state has {len(st.factors)} layers, the policy {len(records)}")
        new = [kronecker_factors(r.inputs, gz, obs.shape[0]) for r, gz in zip(records, grads)]
        olds: list[tuple[Tensor | None, Tensor | None]] = list(st.factors) or [(None, None)] * len(new)
        st.factors = [(running_average(oa, a, self.decay), running_average(og, gg, self.decay))
                      for (oa, og), (a, gg) in zip(olds, new)]  # fmt: skip
        where = param_slices(policy)
        blocks = []  # (weight slice, bias slice or None, Cholesky of G + λ_G I, of A + λ_A I)
        done: set[int] = set()
        for r, (A, G) in zip(records, st.factors):
            w, b = r.module.weight, r.module.bias
            lam_A, lam_G = pi_damping(A, G, self.damping)
            blocks.append((w.shape, where[id(w)], None if b is None else where[id(b)],
                           _chol(G, lam_G), _chol(A, lam_A)))  # fmt: skip
            done.update({id(w)} | (set() if b is None else {id(b)}))
        others = [p for p in policy.parameters() if id(p) not in done]
        idx, diag = None, None
        if others:
            diag = running_average(st.diagonal, fisher_diagonal_of(policy, obs, others, dist), self.decay)
            st.diagonal = diag
            idx = torch.cat([torch.arange(where[id(p)].start, where[id(p)].stop) for p in others])
        st.updates += 1
        damping = self.damping

        def inverse(v: Tensor) -> Tensor:
            x = torch.zeros_like(v)
            for shape, ws, bs, LG, LA in blocks:
                V = v[ws].view(shape)
                if bs is not None:
                    V = torch.cat([V, v[bs].view(-1, 1)], dim=1)
                X = torch.cholesky_solve(torch.cholesky_solve(V, LG).T, LA).T
                x[ws] = X[:, : shape[1]].reshape(-1)
                if bs is not None:
                    x[bs] = X[:, shape[1]]
            if idx is not None and diag is not None:
                x[idx] = v[idx] / (diag + damping)
            return x

        return dist, inverse

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {i: {"A", "G"}, …, n: {"diagonal"?, "updates"}}, "param_groups": []}``
        (``torch.optim`` style, as checkpoints store rule state); empty before the first update."""
        st = self.state
        if st.updates == 0:
            return {}
        entries: dict[int, dict[str, Any]] = {i: {"A": A, "G": G} for i, (A, G) in enumerate(st.factors)}
        last: dict[str, Any] = {"updates": st.updates}
        if st.diagonal is not None:
            last["diagonal"] = st.diagonal
        entries[len(st.factors)] = last
        return {"state": entries, "param_groups": []}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        entries = state.get("state", {}) if state else {}
        st = self.state
        if not entries:
            st.factors, st.diagonal, st.updates = [], None, 0
            return
        n = len(entries) - 1
        last = entries[n]
        st.factors = [(entries[i]["A"].clone(), entries[i]["G"].clone()) for i in range(n)]
        diag = last.get("diagonal")
        st.diagonal = None if diag is None else diag.clone()
        st.updates = int(last["updates"])


@dataclass(frozen=True)
class KFACPreconditionedCG:
    """``kfac-cg``: g̃ = (F + λI)⁻¹g by conjugate gradient on exact Fisher-vector products,
    preconditioned by the K-FAC matrix K (:meth:`KFACDirection.refresh`).

    K-FAC alone gives K⁻¹g, whose error is the Kronecker and block-diagonal approximation; CG alone
    needs many products where F's spectrum is spread. Preconditioned CG searches the Krylov space
    of K⁻¹F, so a few exact products correct K-FAC's direction towards F⁻¹g; its first iterate is
    along K⁻¹g, and with enough iterations it converges to the same solution as ``cg``.
    """

    kfac: KFACDirection
    cg_iters: int = 5
    cg_tol: float = CG_TOL
    method: FVPMethod = "analytic"

    def solve(self, policy: nn.Module, batch: PolicyBatch, g: Tensor) -> Solution:
        t0 = time.perf_counter()
        obs = batch.obs[:: self.kfac.fvp_stride]
        _, inverse = self.kfac.refresh(policy, obs)
        damping = self.kfac.damping
        fvp = fisher_vector_product(policy, obs, damping=damping, method=self.method)
        cg = conjugate_gradient(fvp, g, iters=self.cg_iters, tol=self.cg_tol, precondition=inverse)
        broken = cg.status == "breakdown" or not bool(torch.isfinite(cg.x).all())
        xFx = math.nan if broken else float(torch.dot(cg.x, fvp(cg.x) if cg.Ax is None else cg.Ax))
        seconds = time.perf_counter() - t0
        angle = math.nan
        if not broken:
            angle = reference_angle(policy, obs, g, cg.x, damping=damping, states=self.kfac.angle_states)
        return Solution(cg.x, xFx, cg.residual, cg.iterations, broken, seconds, angle)

    def state_dict(self) -> dict[str, Any]:
        """The K-FAC preconditioner's running factors (:meth:`KFACDirection.state_dict`)."""
        return self.kfac.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kfac.load_state_dict(state)
