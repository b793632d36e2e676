"""The choices core implements and the config offers as options, named once. No torch here: the
config imports them, and ``trustpg train --help`` must answer without importing torch."""

from __future__ import annotations

from typing import Literal

#: How F v is computed (:func:`trustpg.core.fisher.fisher_vector_product`).
FVPMethod = Literal["analytic", "kl_hessian"]
#: The natural-gradient back ends (:mod:`trustpg.core.curvature`).
CurvatureName = Literal["cg", "kfac", "kfac-cg", "diagonal", "empirical"]
#: The distance TRPO's line search keeps within δ (:mod:`trustpg.core.line_search`).
KLMode = Literal["mean", "max", "reverse"]
