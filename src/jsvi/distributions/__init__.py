"""Probability distributions: pytree objects with ``sample`` and ``log_prob``.

Re-exports only. Families: ``continuous`` and ``continuous2`` (univariate),
``truncated`` (``TruncatedNormal``), ``multivariate`` and ``multivariate2``,
``discrete``, ``counts`` and ``negbinomial``, ``mixtures``, ``relaxed``; wrappers (``Independent``, ``ExpandedDistribution``,
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
from jsvi.distributions.continuous2 import (
    AsymmetricLaplace,
    Chi2,
    Gumbel,
    InverseGamma,
    Kumaraswamy,
    Logistic,
    Pareto,
    SoftLaplace,
    VonMises,
    Weibull,
)
from jsvi.distributions.counts import (
    BetaBinomial,
    DirichletMultinomial,
    DiscreteUniform,
    Geometric,
    Multinomial,
)
from jsvi.distributions.delta import Delta
from jsvi.distributions.discrete import (
    Bernoulli,
    Binomial,
    Categorical,
    OneHotCategorical,
    Poisson,
)
from jsvi.distributions.mixtures import MixtureGeneral, MixtureSameFamily
from jsvi.distributions.multivariate import (
    Dirichlet,
    LowRankMultivariateNormal,
    MultivariateNormal,
)
from jsvi.distributions.multivariate2 import (
    LKJ,
    GaussianRandomWalk,
    LKJCholesky,
    MultivariateStudentT,
)
from jsvi.distributions.negbinomial import (
    GammaPoisson,
    NegativeBinomial2,
    NegativeBinomialLogits,
    NegativeBinomialProbs,
    ZeroInflatedDistribution,
    ZeroInflatedNegativeBinomial2,
    ZeroInflatedPoisson,
)
from jsvi.distributions.relaxed import RelaxedBernoulli, RelaxedOneHotCategorical
from jsvi.distributions.truncated import TruncatedNormal
from jsvi.distributions.wrappers import (
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
    NonReparameterized,
    TransformedDistribution,
)

__all__ = [
    "AsymmetricLaplace",
    "Bernoulli",
    "Beta",
    "BetaBinomial",
    "Binomial",
    "Categorical",
    "Cauchy",
    "Chi2",
    "Delta",
    "Dirichlet",
    "DirichletMultinomial",
    "DiscreteUniform",
    "Distribution",
    "ExpandedDistribution",
    "Exponential",
    "Gamma",
    "GammaPoisson",
    "GaussianRandomWalk",
    "Geometric",
    "Gumbel",
    "HalfCauchy",
    "HalfNormal",
    "Independent",
    "InverseGamma",
    "Kumaraswamy",
    "LKJ",
    "LKJCholesky",
    "Laplace",
    "LogNormal",
    "Logistic",
    "LowRankMultivariateNormal",
    "MaskedDistribution",
    "MixtureGeneral",
    "MixtureSameFamily",
    "Multinomial",
    "MultivariateNormal",
    "MultivariateStudentT",
    "NegativeBinomial2",
    "NegativeBinomialLogits",
    "NegativeBinomialProbs",
    "NonReparameterized",
    "Normal",
    "OneHotCategorical",
    "Pareto",
    "Poisson",
    "RelaxedBernoulli",
    "RelaxedOneHotCategorical",
    "SoftLaplace",
    "StudentT",
    "TransformedDistribution",
    "TruncatedNormal",
    "Uniform",
    "VonMises",
    "Weibull",
    "ZeroInflatedDistribution",
    "ZeroInflatedNegativeBinomial2",
    "ZeroInflatedPoisson",
    "enable_validation",
    "validation_enabled",
]
