"""Guides built automatically from a model: ``AutoDelta``, ``AutoNormal``,
``AutoDiagonalNormal``, ``AutoMultivariateNormal``,
``AutoLowRankMultivariateNormal``, ``AutoLaplaceApproximation``, the flow guides
``AutoIAFNormal`` and ``AutoBNAFNormal``, ``AutoGuideList`` and the ``init_to_*`` strategies that choose
where they start.

An autoguide is called with the model's arguments, like any guide, and is trained
with ``jsvi.SVI``. After training, ``guide.median(params)``,
``guide.quantiles(params, quantiles)`` and
``guide.sample_posterior(rng_key, params, *args, sample_shape=...)`` summarize the
approximate posterior.

Re-exports only.
"""

from jsvi.autoguide._base import AutoGuide
from jsvi.autoguide.continuous import (
    AutoContinuous,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
)
from jsvi.autoguide.flows import AutoBNAFNormal, AutoIAFNormal
from jsvi.autoguide.guide_list import AutoGuideList
from jsvi.autoguide.guides import AutoDelta, AutoNormal
from jsvi.autoguide.initialization import (
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)
from jsvi.autoguide.laplace import AutoLaplaceApproximation

__all__ = [
    "AutoBNAFNormal",
    "AutoContinuous",
    "AutoDelta",
    "AutoDiagonalNormal",
    "AutoGuide",
    "AutoGuideList",
    "AutoIAFNormal",
    "AutoLaplaceApproximation",
    "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal",
    "AutoNormal",
    "init_to_feasible",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
]
