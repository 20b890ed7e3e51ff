"""Read-only records of one run: ``Site`` and the ordered ``Trace``.

A ``Trace`` maps site names to ``Site`` records in execution order. Both read like
Pyro's site dicts (``trace["z"]["value"]``) and like records (``trace["z"].value``).

May import: ``jsvi.core.runtime``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, shape_of
from jsvi.core.runtime import CondIndepStackFrame, Message
from jsvi.errors import ShapeError, SiteError

__all__ = ["Site", "Trace", "site_log_prob"]

_KEYS = (
    "type",
    "name",
    "fn",
    "value",
    "is_observed",
    "infer",
    "scale",
    "mask",
    "cond_indep_stack",
    "args",
    "constraint",
    "event_dim",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Site(Mapping):
    """One site of a trace. Read ``site.value`` or ``site["value"]``.

    Attributes:
        kind: ``"sample"``, ``"param"``, ``"deterministic"`` or ``"plate"`` (the
            mapping key is ``"type"``, as in Pyro).
        name: the site's name.
        fn: the distribution (sample sites), after plates broadcast it.
        value: the value (constrained, for params; subsample indices, for plates).
        is_observed: whether a sample site is observed.
        infer: the site's inference options.
        scale: the log-density multiplier from plates/``scale`` (``None`` = 1).
        mask: the boolean mask from ``mask``/``infer`` (``None`` = all true).
        cond_indep_stack: the plates the site sits in, innermost first.
        args: the primitive's extra arguments (a param's init value, a plate's sizes).
        constraint: a param's constraint.
        event_dim: a param's event_dim.
    """

    kind: str
    name: str
    fn: Any = None
    value: Any = None
    is_observed: bool = False
    infer: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    scale: Any = None
    mask: Any = None
    cond_indep_stack: tuple[CondIndepStackFrame, ...] = ()
    args: tuple = ()
    constraint: Any = None
    event_dim: int | None = None

    @classmethod
    def from_message(cls, msg: Message) -> Site:
        return cls(
            kind=msg.kind,
            name=msg.name,
            fn=msg.fn,
            value=msg.value,
            is_observed=msg.is_observed,
            infer=dict(msg.infer),
            scale=msg.scale,
            mask=msg.mask,
            cond_indep_stack=msg.cond_indep_stack,
            args=msg.args,
            constraint=msg.constraint,
            event_dim=msg.event_dim,
        )

    def __getitem__(self, key: str) -> Any:
        if key == "type":
            return self.kind
        if key in _KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_KEYS)

    def __len__(self) -> int:
        return len(_KEYS)

    def __repr__(self) -> str:
        return f"Site({self.kind} {self.name!r}, value shape {shape_of(self.value)})"

    __hash__ = object.__hash__


def _init_shapes(site: Site) -> Any:
    (init,) = site.args or (None,)
    if init is None or callable(init):
        return None
    leaves, treedef = jax.tree.flatten(init)
    return treedef, tuple(shape_of(v) for v in leaves)


def _check_redeclared_param(old: Site, new: Site) -> None:
    """A param read twice in one run must be declared alike both times."""
    if old.constraint != new.constraint:
        raise SiteError(
            f"param {new.name!r}: declared again with constraint {new.constraint!r}, "
            f"but first with {old.constraint!r}. One name is one parameter: declare "
            "it alike each time, or give the second one its own name."
        )
    a, b = _init_shapes(old), _init_shapes(new)
    if a is not None and b is not None and a != b:
        raise ShapeError(
            f"param {new.name!r}: declared again with an init of shape {b[1]}, but "
            f"first with {a[1]}. One name is one parameter: declare it alike each "
            "time, or give the second one its own name."
        )


def site_log_prob(site: Site) -> Array:
    """Per-element log-density of a sample site with its scale and mask applied.

    Returns:
        Array of shape ``fn.batch_shape`` (event dims summed by ``log_prob``).
    """
    log_prob = site.fn.log_prob(site.value)
    if site.mask is not None:
        log_prob = jnp.where(site.mask, log_prob, 0.0)
    if site.scale is not None:
        log_prob = log_prob * site.scale
    return log_prob


class Trace(Mapping):
    """An ordered, read-only mapping ``name -> Site`` recorded by ``handlers.trace``.

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     jsvi.sample("x", dist.Normal(0.0, 1.0), obs=0.0)
        >>> round(float(handlers.trace(model).get_trace().log_prob_sum()), 4)
        -0.9189
    """

    def __init__(self) -> None:
        self._sites: dict[str, Site] = {}

    # -- filled only by the trace handler -----------------------------------------
    def _add(self, site: Site) -> None:
        old = self._sites.get(site.name)
        if old is not None:
            if old.kind == site.kind == "param":
                _check_redeclared_param(old, site)
                return  # the same parameter read twice
            if old.kind == site.kind == "plate":
                if tuple(old.args) != tuple(site.args):
                    raise ShapeError(
                        f"plate {site.name!r}: entered with (size, subsample_size) "
                        f"{tuple(site.args)}, but earlier in this run with "
                        f"{tuple(old.args)}. A plate names one independent dimension: "
                        "reuse the same sizes, or give the new plate its own name."
                    )
                return  # the same plate entered again
            if "Tracer" in site.name:
                seq = [f.name for f in site.cond_indep_stack if not f.vectorized]
                raise SiteError(
                    f"{site.kind} site {site.name!r}: the name was made from a traced "
                    "value, so every iteration gets the same name. Inside a compiled "
                    "step, the indices of a subsampled sequential plate"
                    + (f" ({seq[0]!r})" if seq else "")
                    + " are traced (drawn anew each step): name sites by position, "
                    "`for j, i in enumerate(jsvi.plate(...)): jsvi.sample(f'x_{j}', ..., "
                    "obs=data[i])`."
                )
            raise SiteError(
                f"{site.kind} site {site.name!r}: the name is already used by a "
                f"{old.kind} site in this run. Give every sample/deterministic site a "
                "unique name (inside a Python loop, include the index: f'x_{i}')."
            )
        self._sites[site.name] = site

    # -- Mapping ------------------------------------------------------------------
    def __getitem__(self, name: str) -> Site:
        return self._sites[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sites)

    def __len__(self) -> int:
        return len(self._sites)

    def __repr__(self) -> str:
        return f"Trace({', '.join(f'{s.kind}:{n}' for n, s in self._sites.items())})"

    @property
    def nodes(self) -> Trace:
        """Alias of the trace itself (Pyro's ``trace.nodes``)."""
        return self

    # -- queries ------------------------------------------------------------------
    def sites(self, kind: str | None = None) -> dict[str, Site]:
        """Sites of one kind (all sites if ``kind`` is None), in execution order."""
        return {n: s for n, s in self._sites.items() if kind is None or s.kind == kind}

    def sample_sites(self) -> dict[str, Site]:
        return self.sites("sample")

    def latent_sites(self) -> dict[str, Site]:
        """Sample sites that are not observed."""
        return {n: s for n, s in self.sample_sites().items() if not s.is_observed}

    def observed_sites(self) -> dict[str, Site]:
        return {n: s for n, s in self.sample_sites().items() if s.is_observed}

    def param_sites(self) -> dict[str, Site]:
        return self.sites("param")

    def log_probs(self) -> dict[str, Array]:
        """Per-site log-densities (shape ``fn.batch_shape``), scale and mask applied."""
        return {n: site_log_prob(s) for n, s in self.sample_sites().items()}

    def log_prob_sum(self, site_filter: Callable[[str, Site], bool] | None = None) -> Array:
        """Total log-density of the trace's sample sites, scale and mask applied.

        For a guide trace this is ``log q(z)`` at its sampled values; for a model
        trace replayed against it, ``log p(x, z)``. Their difference is one
        single-sample ELBO estimate. Observed and latent sites both count.

        Args:
            site_filter: optional ``(name, site) -> bool`` to select sites.

        Returns:
            A scalar array.
        """
        total = jnp.zeros(())
        for name, site in self.sample_sites().items():
            if site_filter is None or site_filter(name, site):
                total = total + jnp.sum(site_log_prob(site))
        return total

    def format_shapes(self) -> str:
        """A table of every sample and param site's shapes (see ``jsvi.format_shapes``)."""
        return format_shapes(self)


def _estimator_label(site: Site) -> str:
    if site.is_observed:
        return "-"
    if site.infer.get("enumerate") == "parallel":
        return "enumerated"
    return "pathwise" if getattr(site.fn, "has_rsample", False) else "score-function"


def _dist_name(fn: Any) -> str:
    """``Normal.to_event(1)`` rather than ``Independent``: unwrap jsvi's wrappers
    (read by class name and attributes: ``core`` does not import distributions)."""
    kind = type(fn).__name__
    base = getattr(fn, "base_dist", None)
    if base is None:
        return kind.lstrip("_")
    inner = _dist_name(base)
    if kind == "Independent":
        return f"{inner}.to_event({fn.reinterpreted_batch_ndims})"
    if kind == "ExpandedDistribution":
        return inner  # the batch column shows the expanded shape
    if kind == "MaskedDistribution":
        return f"{inner}.mask"
    return f"{kind}({inner})"


def format_shapes(trace: Trace) -> str:
    """Render a table of the trace's sites: distribution, shapes, plates, treatment.

    Columns: site name, kind/distribution, batch shape, event shape, value shape,
    plates (``name@dim``, or ``name[i]`` for an iteration of a sequential plate),
    observed, reparameterized (``rsample``), marked for enumeration (``enum``), and
    the gradient estimator a latent site gets: ``pathwise`` (reparameterized),
    ``score-function`` (the surrogate ``log q * stop_gradient(cost)``; Rao-Blackwellized
    downstream costs under ``TraceGraph_ELBO``) or ``enumerated`` (summed exactly by
    ``TraceEnum_ELBO``). Observed sites show ``-``.
    """
    rows = [
        ("site", "dist", "batch", "event", "value", "plates", "obs", "rsample", "enum",
         "estimator")
    ]
    for name, site in trace.items():
        if site.kind == "sample":
            plates = " ".join(
                f"{f.name}@{f.dim}" if f.vectorized else f"{f.name}[{f.counter}]"
                for f in reversed(site.cond_indep_stack)
            )
            rows.append(
                (
                    name,
                    _dist_name(site.fn),
                    str(tuple(site.fn.batch_shape)),
                    str(tuple(site.fn.event_shape)),
                    str(shape_of(site.value)),
                    plates or "-",
                    "yes" if site.is_observed else "no",
                    "yes" if getattr(site.fn, "has_rsample", False) else "no",
                    "yes" if site.infer.get("enumerate") == "parallel" else "no",
                    _estimator_label(site),
                )
            )
        elif site.kind == "param":
            shapes = [shape_of(v) for v in _leaves(site.value)]
            shape = str(shapes[0]) if len(shapes) == 1 else f"pytree({len(shapes)})"
            rows.append(
                (name, f"param:{site.constraint!r}", "-", "-", shape, "-", "-", "-",
                 "-", "-")
            )
        elif site.kind == "plate":
            size, subsample_size = site.args
            rows.append(
                (name, "plate", "-", "-", f"({subsample_size},) of {size}", "-", "-",
                 "-", "-", "-")
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _leaves(value: Any) -> list[Any]:
    leaves = jax.tree.leaves(value)
    return leaves if leaves else [np.zeros(())]
