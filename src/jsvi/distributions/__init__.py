"""Probability distributions: pytree objects with ``sample`` and ``log_prob``.

Re-exports only. Families: ``continuous`` (univariate), ``multivariate``,
``discrete``; wrappers (``Independent``, ``ExpandedDistribution``,
``MaskedDistribution``, ``TransformedDistribution``, ``NonReparameterized``) in
``wrappers``; the ``Distribution`` base and validation switch in ``_base``.

May import (within jsvi): ``jsvi.constraints``, ``jsvi.transforms``,
``jsvi._typing``, ``jsvi.errors``; never ``jsvi.core`` or ``jsvi.infer``.
"""

from __future__ import annotations

from jsvi.distributions._base import Distribution
from jsvi.distributions._util import enable_validation, validation_enabled
from jsvi.distributions.continuous import (
    Beta,
    Cauchy,
    Delta,
    Exponential,
    Gamma,
    HalfCauchy,
    HalfNormal,
    Laplace,
    LogNormal,
    Normal,
    StudentT,
    Uniform,
)
from jsvi.distributions.discrete import (
    Bernoulli,
    Binomial,
    Categorical,
    OneHotCategorical,
    Poisson,
)
from jsvi.distributions.multivariate import (
    Dirichlet,
    LowRankMultivariateNormal,
    MultivariateNormal,
)
from jsvi.distributions.wrappers import (
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
    NonReparameterized,
    TransformedDistribution,
)

__all__ = [
    "Bernoulli",
    "Beta",
    "Binomial",
    "Categorical",
    "Cauchy",
    "Delta",
    "Dirichlet",
    "Distribution",
    "ExpandedDistribution",
    "Exponential",
    "Gamma",
    "HalfCauchy",
    "HalfNormal",
    "Independent",
    "Laplace",
    "LogNormal",
    "LowRankMultivariateNormal",
    "MaskedDistribution",
    "MultivariateNormal",
    "Normal",
    "NonReparameterized",
    "OneHotCategorical",
    "Poisson",
    "StudentT",
    "TransformedDistribution",
    "Uniform",
    "enable_validation",
    "validation_enabled",
]
