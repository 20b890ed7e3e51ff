"""``jsvi.validate``: check a model/guide pair once, before training.

It runs the guide and then the model replayed against it once, in one compiled
program of its own (called from Python, not from inside your ``jit``), and applies
the same checks ``svi_init`` applies (``jsvi.infer.checks``): model/guide sites,
shapes against plates, observations, params, supports, and, given an estimator, that
estimator's own rules (enumeration, baselines). The first problem raises a typed
``JsviError`` naming the site; otherwise a ``ValidationReport`` comes back.

May import: ``jsvi.infer``, ``jsvi.core``, ``jsvi._args``, ``jsvi.errors``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jsvi._args import merge_args, split_args
from jsvi._typing import Array, ModelFn, is_concrete
from jsvi.core.trace import Trace, format_shapes
from jsvi.errors import ArgumentError
from jsvi.infer import (
    ELBO,
    check_signatures,
    check_traces,
    get_traces,
    init_values,
    is_internal,
    is_reparameterized,
    unconstrain,
    unconstrained_param_fn,
    value_checks,
)

__all__ = ["ValidationReport", "validate"]



@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """What ``jsvi.validate`` found: every check passed, and what it looked at.

    Attributes:
        loss: name of the estimator whose checks ran too, or ``None``.
        latent: latent site name -> the gradient estimator it gets
            (``"pathwise"``, ``"score-function"`` or ``"enumerated"``).
        observed: names of observed model sites.
        params: param name -> shapes of the leaves of its init value.
        log_density: ``(log p(x, z), log q(z))`` at the checked point, or ``None``
            when the arguments were traced.
        guide_table, model_table: ``jsvi.format_shapes`` of the two traces.
    """

    loss: str | None
    latent: Mapping[str, str]
    observed: tuple[str, ...]
    params: Mapping[str, tuple[tuple[int, ...], ...]]
    log_density: tuple[float, float] | None
    guide_table: str
    model_table: str

    @property
    def ok(self) -> bool:
        """Always ``True``: ``validate`` raises instead of returning a failed report."""
        return True

    def __str__(self) -> str:
        counts: dict[str, int] = {}
        for how in self.latent.values():
            counts[how] = counts.get(how, 0) + 1
        how = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
        checks = f"{self.loss}'s checks included" if self.loss else "generic checks"
        lines = [
            f"jsvi.validate: ok ({checks}). {len(self.latent)} latent site(s) "
            f"({how}), {len(self.observed)} observed, {len(self.params)} param(s).",
        ]
        if self.log_density is not None:
            log_p, log_q = self.log_density
            lines.append(
                f"At the checked point: log p(x, z) = {log_p:.6g}, log q(z) = "
                f"{log_q:.6g}, one-sample ELBO = {log_p - log_q:.6g}."
            )
        lines += ["", "guide:", self.guide_table, "", "model:", self.model_table]
        return "\n".join(lines)

    __repr__ = __str__


def validate(
    model: ModelFn,
    guide: ModelFn,
    *args: Any,
    loss: ELBO | None = None,
    **kwargs: Any,
) -> ValidationReport:
    """Run model and guide once, as a program of their own, and check everything
    checkable.

    The guide is run with its params at their init values, then the model replayed
    against it. As in ``svi_init``, nothing is drawn at random (so nothing has to
    compile): each latent site takes a fixed point of its support (0 for reals, 1
    for positives, the midpoint of an interval, ...) and subsampled plates their
    first indices. Checked, in
    order: the two signatures; model/guide latent sites and value shapes; that every
    batch dim of every site belongs to a plate; observations (dtype, event shape);
    that each plate name means one size and dim; params declared alike wherever they
    appear; that each guide site's support lies inside the model's; params' init
    values inside their constraints and finite; validated distribution arguments
    and observations in their supports; finite log-densities at that point. With
    ``loss``, also that estimator's own checks (enumeration, baselines), by tracing
    one loss evaluation (nothing is compiled).

    Structural checks read only shapes and run on traced arguments too; value
    checks run only where values are concrete. The same checks run in
    ``svi_init`` unless ``SVI(..., validate=False)``.

    Args:
        model, guide: the model and guide functions.
        *args, **kwargs: their arguments, as ``svi_init`` would get them.
        loss: optional estimator (e.g. ``jsvi.TraceEnum_ELBO()``) whose checks run too.

    Returns:
        A ``ValidationReport``; ``print(report)`` shows the site tables.

    Raises:
        ModelGuideMismatchError: model and guide disagree on sites or signatures.
        ShapeError: shapes that do not fit plates, events or each other.
        SiteError: malformed sites (duplicate names, guide obs, bad ``infer``).
        SupportError: an init value, argument, observation or guide support
            outside what the model allows.
        NonFiniteError: a non-finite log-density at the checked point.
        ArgumentError: ``loss`` is not an estimator, or an argument is unusable.

    Example:
        >>> import jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> def model(x):
        ...     mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
        ...     with jsvi.plate("data", x.shape[0]):
        ...         jsvi.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> def guide(x):
        ...     jsvi.sample("mu", dist.Normal(jsvi.param("m", 0.0), 1.0))
        >>> report = jsvi.validate(model, guide, jnp.zeros(3))
        >>> report.latent
        {'mu': 'pathwise'}
    """
    check_signatures(model, guide, "validate")
    if loss is not None and not isinstance(loss, ELBO):
        raise ArgumentError(
            f"validate: loss must be an ELBO estimator such as jsvi.Trace_ELBO(), got "
            f"{type(loss).__name__}."
        )
    dynamic, static = split_args(args, kwargs, "validate")
    found: dict[str, Any] = {}
    run = functools.partial(_checked_run, model, guide, loss, static, found)
    # One compiled program instead of dozens of eager op-by-op compiles. The
    # structural checks raise while it is traced; values come back as flags.
    flags, log_p, log_q = jax.jit(run)(dynamic)
    for (cls, message), ok in zip(found.pop("checks"), flags, strict=True):
        if is_concrete(ok) and not bool(ok):
            raise cls(f"validate: {message}.")
    if loss is not None:
        jax.eval_shape(
            functools.partial(_trace_loss, model, guide, loss, static), dynamic
        )
    density = None
    if is_concrete(log_p) and is_concrete(log_q):
        density = (float(log_p), float(log_q))
    return ValidationReport(log_density=density, **found)


def _checked_run(
    model: ModelFn,
    guide: ModelFn,
    loss: ELBO | None,
    static: Any,
    found: dict[str, Any],
    dynamic: list,
) -> tuple[list[Array], Array, Array]:
    """Run guide and model at a feasible point; raise structural problems; return
    the value checks' flags and the two log-densities. Static facts about the traces
    (and the checks' messages) go into ``found``."""
    args, kwargs = merge_args(static, dynamic)
    model_tr, guide_tr = get_traces(
        jax.random.key(0), model, guide, init_values, args, kwargs, draw=False
    )
    check_traces(model_tr, guide_tr)
    if loss is not None:
        loss.check_traces(model_tr, guide_tr)
    found.update(_facts(model_tr, guide_tr, loss))
    checks = value_checks(model_tr, guide_tr)
    found["checks"] = [(cls, message) for cls, message, _ in checks]
    return [ok for _, _, ok in checks], model_tr.log_prob_sum(), guide_tr.log_prob_sum()


def _trace_loss(
    model: ModelFn, guide: ModelFn, loss: ELBO, static: Any, dynamic: list
) -> Any:
    """One estimator evaluation at the init params, for tracing only: surfaces the
    estimator's own structural errors (enumeration dims, baseline shapes, ...)."""
    args, kwargs = merge_args(static, dynamic)
    key = jax.random.key(0)
    model_tr, guide_tr = get_traces(
        key, model, guide, init_values, args, kwargs, draw=False
    )
    params: dict[str, Any] = {}
    for tr in (guide_tr, model_tr):
        for name, site in tr.param_sites().items():
            params.setdefault(name, unconstrain(site.value, site.constraint))
    param_fn = unconstrained_param_fn(params)
    state = loss.init_state(key, param_fn, model, guide, args, kwargs)
    return loss.loss_and_aux(key, param_fn, model, guide, state, args, kwargs)


def _estimator_of(g_site: Any, m_site: Any) -> str:
    if g_site is None:
        return "enumerated" if m_site.infer.get("enumerate") == "parallel" else "?"
    if g_site.infer.get("enumerate") == "parallel":
        return "enumerated"
    return "pathwise" if is_reparameterized(g_site) else "score-function"


def _facts(model_tr: Trace, guide_tr: Trace, loss: ELBO | None) -> dict[str, Any]:
    g_latent = guide_tr.latent_sites()
    latent = {
        name: _estimator_of(g_latent.get(name), m_site)
        for name, m_site in model_tr.latent_sites().items()
        if not is_internal(name)
    }
    params: dict[str, tuple[tuple[int, ...], ...]] = {}
    for tr in (guide_tr, model_tr):
        for name, site in tr.param_sites().items():
            params.setdefault(
                name, tuple(tuple(np.shape(v)) for v in jax.tree.leaves(site.value))
            )
    return {
        "loss": None if loss is None else type(loss).__name__,
        "latent": latent,
        "observed": tuple(n for n in model_tr.observed_sites() if not is_internal(n)),
        "params": params,
        "guide_table": format_shapes(guide_tr),
        "model_table": format_shapes(model_tr),
    }
