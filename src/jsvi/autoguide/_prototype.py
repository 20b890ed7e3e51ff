"""What an autoguide learns from one run of the model: its continuous latent sites
(shapes, supports, plates), the prototype run that finds them, and the run that
puts every site at its initial value.

The prototype run hides every message from the handlers around it (``isolate``),
puts each latent site at a fixed point of its support (``feasible_draws``), and
evaluates constants at trace time (``jax.ensure_compile_time_eval``), so supports
with constant bounds are concrete even inside ``jit``.

May import (within jsvi): ``jsvi.core``, ``jsvi.transforms``, ``jsvi.constraints``,
``jsvi.infer.elbo``, ``jsvi.autoguide.initialization``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, ModelFn, PRNGKey, Shape
from jsvi.autoguide.initialization import InitStrategy, initial_value
from jsvi.constraints import Constraint
from jsvi.core.handlers import seed, substitute, trace
from jsvi.core.runtime import CondIndepStackFrame, Handler, Message
from jsvi.core.trace import Site, Trace
from jsvi.errors import ModelGuideMismatchError, ShapeError, SiteError
from jsvi.infer import feasible_draws
from jsvi.transforms import (
    IdentityTransform,
    IndependentTransform,
    Transform,
    biject_to,
)

__all__ = [
    "InitLocs",
    "LatentSite",
    "PlateInfo",
    "Prototype",
    "extract_prototype",
    "is_identity",
    "is_static_constraint",
    "isolate",
    "prototype_trace",
    "take_subsample",
    "tile_to_full",
]


# ---------------------------------------------------------------------------
# the structure of a model's latent sites


@dataclasses.dataclass(frozen=True, eq=False)
class LatentSite:
    """A continuous latent site of the model, as an autoguide sees it.

    Attributes:
        name: the site's name.
        batch_shape, event_shape: the distribution's shapes in one run (plates
            applied; a subsampled plate contributes its ``subsample_size``).
        support: the distribution's support (may hold arrays).
        frames: the vectorized plates the site sits in, innermost first.
        mask: the model site's mask (e.g. the missing entries of an ``obs_mask``
            site), which the guide's site takes too; None when the site has none
            or sits in a plate subsampled at random (the mask of one run's
            subsample would not fit another's).
    """

    name: str
    batch_shape: Shape
    event_shape: Shape
    support: Constraint
    frames: tuple[CondIndepStackFrame, ...]
    mask: Any = None

    @property
    def shape(self) -> Shape:
        """The value's shape in one run."""
        return self.batch_shape + self.event_shape

    @property
    def full_shape(self) -> Shape:
        """The value's shape with every subsampled plate at its full size."""
        shape = list(self.shape)
        for f in self.frames:
            shape[len(self.batch_shape) + f.dim] = f.size
        return tuple(shape)

    @property
    def transform(self) -> Transform:
        """``biject_to(support)``: unconstrained reals onto the support."""
        return biject_to(self.support)

    @property
    def u_shape(self) -> Shape:
        """The unconstrained value's shape in one run."""
        return tuple(self.transform.inverse_shape(self.shape))

    @property
    def u_full_shape(self) -> Shape:
        """The unconstrained value's shape at full plate sizes."""
        return tuple(self.transform.inverse_shape(self.full_shape))

    @property
    def subsampled(self) -> tuple[CondIndepStackFrame, ...]:
        """The frames whose plates are subsampled."""
        return tuple(f for f in self.frames if f.subsample_size < f.size)


@dataclasses.dataclass(frozen=True, eq=False)
class PlateInfo:
    """A vectorized plate that holds latent sites.

    Attributes:
        name, size, subsample_size, dim: as in ``jsvi.plate``.
        indices: the model's own ``subsample=`` indices, or None when the plate
            draws them (the guide then draws them and they are replayed).
    """

    name: str
    size: int
    subsample_size: int
    dim: int
    indices: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class Prototype:
    """What one prototype run of the model tells an autoguide.

    Attributes:
        latents: the continuous latent sites, in execution order.
        plates: the vectorized plates holding them, by name.
        model_params: names of the model's own ``param`` sites.
        deterministics: names of the model's ``deterministic`` sites.
    """

    latents: tuple[LatentSite, ...]
    plates: Mapping[str, PlateInfo]
    model_params: frozenset[str]
    deterministics: tuple[str, ...] = ()

    def concrete(self) -> Prototype | None:
        """This prototype without traced values, or None if a support is traced."""
        if not all(_is_concrete_tree(s.support) for s in self.latents):
            return None
        plates = {
            n: p
            if _is_concrete_tree(p.indices)
            else dataclasses.replace(p, indices=None)
            for n, p in self.plates.items()
        }
        latents = tuple(
            s if _is_concrete_tree(s.mask) else dataclasses.replace(s, mask=None)
            for s in self.latents
        )
        return dataclasses.replace(self, plates=plates, latents=latents)


def _is_concrete_tree(obj: Any) -> bool:
    """No tracer anywhere in ``obj`` (a constraint's fields, an array, None)."""
    if isinstance(obj, jax.core.Tracer):
        return False
    if isinstance(obj, Constraint) and dataclasses.is_dataclass(obj):
        return all(
            _is_concrete_tree(getattr(obj, f.name)) for f in dataclasses.fields(obj)
        )
    return True


def is_static_constraint(constraint: Constraint) -> bool:
    """True when the constraint holds no arrays (hashable: it can be a param's)."""
    if dataclasses.is_dataclass(constraint):
        for f in dataclasses.fields(constraint):
            value = getattr(constraint, f.name)
            if isinstance(value, Constraint):
                if not is_static_constraint(value):
                    return False
            elif isinstance(value, jax.Array | np.ndarray | jax.core.Tracer):
                return False
    try:
        hash(constraint)
    except TypeError:
        return False
    return True


def is_identity(transform: Transform) -> bool:
    """Whether ``transform`` is the identity (possibly with extra event dims)."""
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    return isinstance(transform, IdentityTransform)


class isolate(Handler):
    """Hide every message of the enclosed run from the handlers outside it.

    Unlike ``block``, it also stops the internal messages (such as the query for
    enclosing plates), so a model run inside a guide's plate does not see it.
    """

    def process(self, msg: Message) -> None:
        msg.stop = True


class _ExplicitPlates(Handler):
    """Records which plates got their indices from the model (``subsample=``)."""

    def _on_enter(self) -> _ExplicitPlates:
        self.names: set[str] = set()
        return self

    def process(self, msg: Message) -> None:
        if msg.kind == "plate" and msg.value is not None:
            self.names.add(msg.name)


def prototype_trace(model: ModelFn, args: tuple, kwargs: Mapping[str, Any]):
    """Run ``model`` once, hidden, at feasible points; return its trace and the
    names of plates with model-given indices."""
    marker = _ExplicitPlates(model)
    with jax.ensure_compile_time_eval(), isolate():
        tr = trace(seed(feasible_draws(marker), rng_key=0)).get_trace(*args, **kwargs)
    return tr, marker.names


def _discrete_error(where: str, site: Site) -> SiteError:
    fn = site.fn
    while type(fn).__name__ == "ExpandedDistribution":  # a plate expanded it
        fn = fn.base_dist
    return SiteError(
        f"{where}: model site {site.name!r} is a discrete latent "
        f"({type(fn).__name__}, support {site.fn.support!r}) that is not "
        "enumerated, and autoguides cover continuous latents only. Mark it for "
        "enumeration (infer={'enumerate': 'parallel'}, or "
        "jsvi.config_enumerate(model)) and train with an enumerating estimator, "
        "observe it, or write a guide for it by hand."
    )


def extract_prototype(
    tr: Trace, explicit: set[str], where: str, names: tuple[str, ...] | None = None
) -> Prototype:
    """The latent sites and plates of a prototype trace.

    Args:
        tr: the prototype trace.
        explicit: names of plates whose indices the model gave.
        where: the guide's name, for messages.
        names: if given, only these latent sites are taken (the others are left
            to the model).

    Raises:
        SiteError: a latent site is discrete and not marked for enumeration.
        ModelGuideMismatchError: a site of ``names`` is not latent in ``tr``.
    """
    latents, plates = [], {}
    found = tr.latent_sites()
    if names is not None:
        missing = [n for n in names if n not in found]
        if missing:
            raise ModelGuideMismatchError(
                f"{where}: model sites {missing} were latent when the guide was first "
                "run but are observed or absent now. Call the model with the same "
                "observed sites as in training (pass obs=None only for sites the "
                "guide does not cover)."
            )
        found = {n: found[n] for n in names}
    for name, site in found.items():
        fn = site.fn
        support = getattr(fn, "support", None)
        discrete = getattr(fn, "is_discrete", False) or getattr(
            support, "is_discrete", False
        )
        if discrete:
            if site.infer.get("enumerate") == "parallel":
                continue
            raise _discrete_error(where, site)
        if support is None:
            raise SiteError(
                f"{where}: model site {name!r} has a distribution "
                f"({type(fn).__name__}) without a support, so no bijection to the "
                "reals is known. Use a jsvi distribution or write a guide by hand."
            )
        frames = tuple(f for f in site.cond_indep_stack if f.vectorized)
        random_subsample = any(
            f.subsample_size != f.size and f.name not in explicit for f in frames
        )
        mask = None if random_subsample or isinstance(site.mask, bool) else site.mask
        latents.append(
            LatentSite(
                name, tuple(fn.batch_shape), tuple(fn.event_shape), support, frames,
                mask,
            )
        )
        for f in frames:
            if f.name not in plates:
                indices = tr[f.name].value if f.name in explicit else None
                plates[f.name] = PlateInfo(
                    f.name, f.size, f.subsample_size, f.dim, indices
                )
    deterministics = tuple(n for n, s in tr.items() if s.kind == "deterministic")
    return Prototype(tuple(latents), plates, frozenset(tr.param_sites()), deterministics)


def deterministic_sites(
    model: ModelFn,
    values: Mapping[str, Any],
    rng_key: Any,
    args: tuple,
    kwargs: Mapping[str, Any],
) -> dict[str, Array]:
    """The model's ``deterministic`` sites, with ``values`` (latent draws, params,
    plate indices by name) substituted: one hidden run of the model."""
    with isolate():
        tr = trace(seed(substitute(model, data=values), rng_key)).get_trace(
            *args, **kwargs
        )
    return {n: s.value for n, s in tr.items() if s.kind == "deterministic"}


# ---------------------------------------------------------------------------
# subsampling and initial values


def take_subsample(x: Array, latent: LatentSite, indices: Mapping[str, Array]) -> Array:
    """Select the elements of a full-size array (value or unconstrained) that a
    run's subsampled plates hold."""
    for f in latent.subsampled:
        x = jnp.take(x, indices[f.name], axis=len(latent.batch_shape) + f.dim)
    return x


def tile_to_full(x: Array, latent: LatentSite) -> Array:
    """Fill a full-size array from a run-sized one by repeating it along the
    subsampled plates' dims."""
    for f in latent.subsampled:
        cyclic = jnp.arange(f.size) % f.subsample_size
        x = jnp.take(x, cyclic, axis=len(latent.batch_shape) + f.dim)
    return x


def _fit_init(value: Array, latent: LatentSite, indices: Mapping[str, Array]):
    """``(value for this run, full-size value)`` from a strategy's value."""
    if value.shape == latent.full_shape:
        return take_subsample(value, latent, indices), value
    try:
        run_value = jnp.broadcast_to(value, latent.shape)
    except ValueError:
        raise ShapeError(
            f"sample site {latent.name!r}: the init_loc_fn gave a value of shape "
            f"{value.shape}, but the site has shape {latent.shape} in one run (full "
            f"shape {latent.full_shape}). Give a value of one of these shapes."
        ) from None
    return run_value, tile_to_full(run_value, latent)


class InitLocs(Handler):
    """Puts every latent site at its init strategy's value; records them."""

    def __init__(
        self,
        fn: ModelFn,
        strategy: InitStrategy,
        rng_key: PRNGKey,
        latents: Mapping[str, LatentSite],
    ):
        super().__init__(fn)
        self.strategy = strategy
        self.rng_key = rng_key
        self.latents = latents

    def _on_enter(self) -> InitLocs:
        self.values: dict[str, Array] = {}
        self.indices: dict[str, Array] = {}
        self._count = 0
        return self

    def process(self, msg: Message) -> None:
        if msg.value is not None:
            return
        if msg.kind == "plate":
            msg.value = jnp.arange(msg.args[1])
        elif msg.kind == "sample" and msg.name in self.latents:
            key = jax.random.fold_in(self.rng_key, self._count)
            self._count += 1
            value = initial_value(self.strategy, Site.from_message(msg), key)
            run_value, full = _fit_init(value, self.latents[msg.name], self.indices)
            msg.value = run_value
            self.values[msg.name] = full

    def postprocess(self, msg: Message) -> None:
        if msg.kind == "plate":
            self.indices[msg.name] = msg.value
