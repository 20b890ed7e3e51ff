"""Reparameterizers and the ``reparam`` handler that applies them.

A reparameterizer replaces one latent sample site by auxiliary sample sites and
a deterministic function of them, so that inference works in other coordinates
(non-centred hierarchical models, the base space of a flow) while the model's
distribution over the original site stays the same. The original site is then
recorded as a ``deterministic`` site with the same name and value.

- ``LocScaleReparam(centered=None)``: ``Normal``/``Cauchy``/``Laplace``/``StudentT``
  sites; partial or learned centring.
- ``TransformReparam()``: ``TransformedDistribution`` sites become their base.

May import: ``jsvi.core``, ``jsvi.distributions``, ``jsvi.constraints``,
``jsvi.transforms``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, ModelFn
from jsvi.core.primitives import param, sample
from jsvi.core.runtime import Handler, Message
from jsvi.distributions import (
    Cauchy,
    Distribution,
    ExpandedDistribution,
    Independent,
    Laplace,
    Normal,
    StudentT,
    TransformedDistribution,
)
from jsvi.errors import ArgumentError, SiteError

__all__ = ["LocScaleReparam", "Reparam", "TransformReparam", "reparam"]

_AUXILIARY = "_jsvi/reparam_auxiliary"


class Reparam:
    """Base class: ``apply(name, fn)`` samples auxiliary sites and returns the
    original site's value (shape ``fn.batch_shape + fn.event_shape``)."""

    def apply(self, name: str, fn: Distribution) -> Array:
        raise NotImplementedError


def _aux_sample(name: str, fn: Distribution) -> Array:
    return sample(name, fn, infer={_AUXILIARY: True})


def _peel(fn: Any) -> tuple[Any, int]:
    """The distribution under plate expansions and ``to_event`` wrappers, and the
    number of event dims the wrappers add."""
    event_ndims = 0
    while isinstance(fn, (ExpandedDistribution, Independent)):
        if isinstance(fn, Independent):
            event_ndims += fn.reinterpreted_batch_ndims
        fn = fn.base_dist
    return fn, event_ndims


_LOC_SCALE: dict[type, Callable[[Any, Array, Array], Distribution]] = {
    Normal: lambda d, loc, scale: Normal(loc, scale),
    Cauchy: lambda d, loc, scale: Cauchy(loc, scale),
    Laplace: lambda d, loc, scale: Laplace(loc, scale),
    StudentT: lambda d, loc, scale: StudentT(d.df, loc, scale),
}


class LocScaleReparam(Reparam):
    r"""Partially or fully decentre a location-scale site.

    A site :math:`x \sim F(\mu, \sigma)` becomes the auxiliary site
    ``<name>_decentered`` :math:`u \sim F(c\mu, \sigma^c)` and the deterministic
    :math:`x = \mu + \sigma^{1-c}(u - c\mu)`, which has the law :math:`F(\mu,
    \sigma)` for every centredness :math:`c \in [0, 1]`: ``c = 1`` is the
    original (centred) form, ``c = 0`` the non-centred one,
    :math:`u \sim F(0, 1)`, :math:`x = \mu + \sigma u`. With ``centered=None``
    :math:`c` is a model parameter ``<name>_centered`` (one per element, in
    ``[0, 1]``, starting at 0.5) learned with the rest.

    Families: ``Normal``, ``Cauchy``, ``Laplace``, ``StudentT`` (``df`` is kept),
    possibly expanded by plates or wrapped by ``to_event``.

    Args:
        centered: ``None`` (learned), or a number or array in ``[0, 1]``.

    References:
        Papaspiliopoulos, Roberts, Sköld (2007), A general framework for the
        parametrization of hierarchical models.
        Gorinova, Moore, Hoffman (2020), Automatic reparameterisation of
        probabilistic programs.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> from jsvi.reparam import LocScaleReparam
        >>> def model():
        ...     mu = jsvi.sample("mu", dist.Normal(0.0, 1.0))
        ...     return jsvi.sample("x", dist.Normal(mu, 2.0))
        >>> nc = handlers.reparam(model, config={"x": LocScaleReparam(centered=0)})
        >>> tr = handlers.trace(handlers.seed(nc, rng_key=0)).get_trace()
        >>> [(n, s.kind) for n, s in tr.items()]
        [('mu', 'sample'), ('x_decentered', 'sample'), ('x', 'deterministic')]
    """

    def __init__(self, centered: ArrayLike | None = None):
        self._all_centred = False
        if centered is not None:
            c = np.asarray(centered)
            if not np.issubdtype(c.dtype, np.number) or bool(np.any((c < 0) | (c > 1))):
                raise ArgumentError(
                    f"LocScaleReparam: centered must be None or in [0, 1], got "
                    f"{centered!r}. Use 0 for non-centred, 1 for centred, None to "
                    "learn it."
                )
            self._all_centred = bool(np.all(c == 1))
        self.centered = centered

    def apply(self, name: str, fn: Distribution) -> Array:
        core, event_ndims = _peel(fn)
        build = _LOC_SCALE.get(type(core))
        if build is None:
            raise SiteError(
                f"sample site {name!r}: LocScaleReparam needs a location-scale family "
                f"({', '.join(t.__name__ for t in _LOC_SCALE)}), got "
                f"{type(core).__name__}. Remove {name!r} from the reparam config or "
                "write it as a TransformedDistribution and use TransformReparam."
            )
        shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
        loc = jnp.broadcast_to(core.loc, shape)
        scale = jnp.broadcast_to(core.scale, shape)
        if self.centered is None:
            c = param(
                f"{name}_centered",
                jnp.full(shape, 0.5, loc.dtype),
                constraint=constraints.unit_interval,
            )
        else:
            c = jnp.asarray(self.centered, loc.dtype)
        if self._all_centred:
            return _aux_sample(f"{name}_decentered", fn)
        aux_fn = build(core, c * loc, scale**c)
        aux_fn = aux_fn.expand(shape) if aux_fn.batch_shape != shape else aux_fn
        if event_ndims:
            aux_fn = aux_fn.to_event(event_ndims)
        u = _aux_sample(f"{name}_decentered", aux_fn)
        return loc + scale ** (1 - c) * (u - c * loc)


class TransformReparam(Reparam):
    r"""Sample a ``TransformedDistribution`` site through its base.

    A site :math:`y \sim T_\# B` becomes the auxiliary site ``<name>_base``
    :math:`x \sim B` and the deterministic :math:`y = T(x)`. Plate expansions and
    ``to_event`` around the transformed distribution carry over to the base.
    A guide then fits ``x``; with ``T`` an affine map this is how a non-centred
    form is written by hand.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> from jsvi.reparam import TransformReparam
        >>> from jsvi.transforms import ExpTransform
        >>> def model():
        ...     return jsvi.sample("y", dist.TransformedDistribution(dist.Normal(0., 1.), ExpTransform()))
        >>> tr = handlers.trace(handlers.seed(
        ...     handlers.reparam(model, config={"y": TransformReparam()}), rng_key=0)).get_trace()
        >>> bool(jnp.allclose(tr["y"].value, jnp.exp(tr["y_base"].value)))
        True
    """

    def apply(self, name: str, fn: Distribution) -> Array:
        core, _ = _peel(fn)
        if not isinstance(core, TransformedDistribution):
            raise SiteError(
                f"sample site {name!r}: TransformReparam needs a "
                f"TransformedDistribution, got {type(core).__name__}. Remove "
                f"{name!r} from the reparam config, or build the site as "
                "dist.TransformedDistribution(base, transforms)."
            )
        shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
        base = core.base_dist
        base_shape = tuple(base.batch_shape) + tuple(base.event_shape)
        if base_shape != tuple(core.batch_shape) + tuple(core.event_shape):
            raise SiteError(
                f"sample site {name!r}: TransformReparam handles shape-preserving "
                f"transforms; the base has shape {base_shape} but the site "
                f"{tuple(core.batch_shape) + tuple(core.event_shape)}. Reparameterize "
                "a shape-preserving transform, or leave the site as it is."
            )
        # Broadcast the base over the plates' dims (its own event dims stay).
        ndims_base_event = len(base.event_shape)
        target_batch = shape[: len(shape) - ndims_base_event]
        if tuple(base.batch_shape) != target_batch:
            base = base.expand(target_batch)
        extra = len(fn.event_shape) - ndims_base_event
        if extra > 0:
            base = base.to_event(extra)
        x = _aux_sample(f"{name}_base", base)
        for t in core.transforms:
            x = t(x)
        return x


Config = Mapping[str, Reparam] | Callable[[Message], "Reparam | None"]


class reparam(Handler):
    """Reparameterize latent sample sites by name (or by a rule).

    Args:
        fn: the model.
        config: a dict site name -> reparameterizer, or a callable
            ``msg -> reparameterizer or None`` (``msg.name``, ``msg.fn``).

    Raises:
        SiteError: the configured site is observed, or its distribution does
            not suit the reparameterizer.

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> from jsvi.reparam import LocScaleReparam
        >>> def model():
        ...     with jsvi.plate("j", 3):
        ...         jsvi.sample("theta", dist.Normal(1.0, 2.0))
        >>> nc = handlers.reparam(model, config=lambda msg: LocScaleReparam(0))
        >>> tr = handlers.trace(handlers.seed(nc, rng_key=0)).get_trace()
        >>> tr["theta_decentered"].fn.batch_shape, tr["theta"].value.shape
        ((3,), (3,))
    """

    def __init__(self, fn: ModelFn | None = None, config: Config | None = None):
        super().__init__(fn)
        if config is None or not (isinstance(config, Mapping) or callable(config)):
            raise ArgumentError(
                f"reparam: config must be a dict name -> reparameterizer or a callable "
                f"msg -> reparameterizer or None, got {config!r}. E.g. "
                "reparam(model, config={'theta': LocScaleReparam(centered=0)})."
            )
        self.config = config

    def _lookup(self, msg: Message) -> Reparam | None:
        if isinstance(self.config, Mapping):
            found = self.config.get(msg.name)
        else:
            found = self.config(msg)
        if found is not None and not isinstance(found, Reparam):
            raise ArgumentError(
                f"reparam: the config gives {found!r} for site {msg.name!r}; expected "
                "a reparameterizer such as LocScaleReparam() or TransformReparam()."
            )
        return found

    def process(self, msg: Message) -> None:
        if msg.kind != "sample" or msg.infer.get(_AUXILIARY):
            return
        rule = self._lookup(msg)
        if rule is None:
            return
        if msg.is_observed:
            raise SiteError(
                f"sample site {msg.name!r}: observed, but the reparam config names it. "
                "Reparameterize latent sites only; remove it from the config."
            )
        if msg.value is not None:
            return  # an inner handler already fixed it
        msg.value = rule.apply(msg.name, msg.fn)
        msg.kind = "deterministic"
        msg.fn = None
