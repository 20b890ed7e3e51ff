"""More effect handlers, with Pyro's and NumPyro's names and meanings: ``do``
(interventions), ``scope`` (name prefixes), ``lift`` (params become sample sites
drawn from a prior) and ``uncondition`` (observed sites become latent).

Like those in ``jsvi.core.handlers``, each works as a wrapper, as a context
manager and as a decorator with its arguments.

May import: ``jsvi.core.handlers``, ``jsvi.core.primitives``, ``jsvi.core.runtime``,
``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsvi._typing import ModelFn
from jsvi.core.handlers import _Handler
from jsvi.core.primitives import draw
from jsvi.core.runtime import Message
from jsvi.errors import ArgumentError

__all__ = ["do", "lift", "scope", "uncondition"]


class do(_Handler):
    """Intervene on sample sites: the model downstream sees the values in ``data``.

    Each site named in ``data`` is still drawn (or replayed, or observed) and
    recorded under its own name, but the value it returns to the model is the
    intervention, so nothing downstream depends on the draw (Pyro's ``do``: the
    graph is cut at the site). The site's own log-density still counts.

    Args:
        data: dict site name -> value to return.

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     z = jsvi.sample("z", dist.Normal(0.0, 1.0))
        ...     return jsvi.sample("x", dist.Normal(z, 0.01))
        >>> x = handlers.seed(handlers.do(model, data={"z": 5.0}), rng_key=0)()
        >>> bool(abs(x - 5.0) < 0.1)
        True
    """

    def __init__(self, fn: ModelFn | None = None, data: Mapping[str, Any] | None = None):
        super().__init__(fn)
        if not isinstance(data, Mapping):
            raise ArgumentError(
                f"do: data must be a dict site name -> value, got {type(data).__name__}."
                " Pass e.g. do(model, data={'z': 1.0})."
            )
        self.data = data

    def process(self, msg: Message) -> None:
        if msg.kind == "sample" and msg.name in self.data and "do_value" not in msg.kwargs:
            msg.kwargs = {**msg.kwargs, "do_value": self.data[msg.name]}


class scope(_Handler):
    """Prefix the names of sample, param and deterministic sites: ``prefix/name``.

    Plates keep their names, so a scoped model and a scoped guide still share
    them. Use it to run one model twice in a bigger one without name clashes.

    Args:
        prefix: the prefix.
        divider: put between prefix and name (default ``"/"``).

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> @handlers.scope(prefix="a")
        ... def model():
        ...     jsvi.sample("z", dist.Normal(0.0, 1.0))
        >>> list(handlers.trace(handlers.seed(model, rng_key=0)).get_trace())
        ['a/z']
    """

    def __init__(self, fn: ModelFn | None = None, prefix: str | None = None, divider: str = "/"):
        super().__init__(fn)
        if not isinstance(prefix, str) or not prefix:
            raise ArgumentError(f"scope: prefix must be a non-empty str, got {prefix!r}.")
        if prefix.startswith("_jsvi/"):
            raise ArgumentError(
                f"scope: prefix {prefix!r} starts with '_jsvi/', which is reserved for "
                "jsvi's internal sites. Choose another prefix."
            )
        self.prefix = prefix
        self.divider = divider

    def process(self, msg: Message) -> None:
        if msg.kind in ("sample", "param", "deterministic"):
            msg.name = f"{self.prefix}{self.divider}{msg.name}"


class lift(_Handler):
    """Turn ``param`` sites into sample sites drawn from a prior.

    Args:
        prior: a distribution used for every param, or a dict param name ->
            distribution (params not in it stay params).

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     return jsvi.param("w", 0.0)
        >>> lifted = handlers.lift(model, prior={"w": dist.Normal(10.0, 0.01)})
        >>> tr = handlers.trace(handlers.seed(lifted, rng_key=0)).get_trace()
        >>> tr["w"].kind, bool(abs(tr["w"].value - 10.0) < 0.1)
        ('sample', True)
    """

    def __init__(self, fn: ModelFn | None = None, prior: Any = None):
        super().__init__(fn)
        if prior is None:
            raise ArgumentError(
                "lift: prior is required, a distribution or a dict param name -> "
                "distribution."
            )
        self.prior = prior

    def _prior(self, name: str) -> Any:
        if isinstance(self.prior, Mapping):
            return self.prior.get(name)
        return self.prior

    def process(self, msg: Message) -> None:
        if msg.kind != "param" or msg.value is not None:
            return
        fn = self._prior(msg.name)
        if fn is None:
            return
        if not all(hasattr(fn, a) for a in ("sample", "log_prob", "batch_shape")):
            raise ArgumentError(
                f"lift: the prior for param {msg.name!r} must be a distribution, got "
                f"{type(fn).__name__}."
            )
        msg.kind, msg.fn, msg.args, msg.default = "sample", fn, (), draw
        msg.constraint = None


class uncondition(_Handler):
    """Make observed sample sites latent: they are drawn from their distribution
    and the observation is kept in ``site.infer["obs"]`` (``was_observed``: True).

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     return jsvi.sample("x", dist.Normal(0.0, 1.0), obs=3.0)
        >>> tr = handlers.trace(handlers.seed(handlers.uncondition(model), rng_key=0)).get_trace()
        >>> tr["x"].is_observed, float(tr["x"].infer["obs"])
        (False, 3.0)
    """

    def process(self, msg: Message) -> None:
        if msg.kind == "sample" and msg.is_observed:
            msg.infer = {**msg.infer, "was_observed": True, "obs": msg.value}
            msg.is_observed = False
            msg.value = None


