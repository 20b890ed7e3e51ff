"""Enumeration of discrete sample sites: the ``enum`` handler.

A site marked ``infer={"enumerate": "parallel"}`` that has no value yet gets its
whole support as its value, laid out along a fresh batch dim to the left of every
plate dim. With ``max_plate_nesting = P`` plates use dims ``-1 .. -P``; the k-th
enumerated site of a run (k = 0, 1, ...) takes dim ``first_available_dim - k``,
by default ``-(P + 1 + k)``. Everything computed from the value then broadcasts
along that dim, so one run of the model evaluates every assignment at once and no
Python loop over support values is needed. The dim is recorded in the site's
``infer["_enumerate_dim"]``; estimators read it from the trace.

Inside ``jsvi.markov`` a site enumerated more than ``history`` steps ago stops
being visible, and its dim is handed to the next site that needs one: a new site
takes the dim nearest the plates that no visible site holds. Because a dim may
then stand for different sites at different points of a run, every sample site
run while some enumerated site is visible records which site each dim stands
for, as ``infer["_enumerate_live"]`` (dim -> site name); estimators read a
site's enumeration dims through that record.

A site marked ``infer={"enumerate": "sequential"}`` is not laid out along a dim:
it takes one value of its support, chosen by ``sequential_values``, and
``TraceEnum_ELBO`` runs the model once per value and sums the runs.

The handler also checks what enumeration needs: the site has a finite support,
its batch shape leaves room for the new dim, the support is not too large, and no
site sits in more vectorized plates than ``max_plate_nesting`` allows.

May import: ``jsvi.core.*``, ``jsvi.constraints``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from jsvi import constraints
from jsvi._typing import ModelFn, Shape
from jsvi.core.runtime import Handler, Message
from jsvi.errors import ArgumentError, ShapeError, SiteError

__all__ = [
    "DEFAULT_MAX_ENUM_SIZE",
    "ENUM_DIM_KEY",
    "ENUM_LIVE_KEY",
    "MARKOV_KIND",
    "SEQUENTIAL_SIZE_KEY",
    "enum",
    "support_size",
]

#: Key of ``site.infer`` that holds the dim an enumerated site was laid out along.
ENUM_DIM_KEY = "_enumerate_dim"

#: Key of ``site.infer`` that maps each enumeration dim visible to the site to the
#: name of the enumerated site it stands for at that point of the run.
ENUM_LIVE_KEY = "_enumerate_live"

#: Key of ``site.infer`` that marks a site summed out one value at a time
#: (``"sequential"``): the size of its support.
SEQUENTIAL_SIZE_KEY = "_sequential_size"

#: ``Message.kind`` of the step messages ``jsvi.markov`` sends: ``args`` is
#: ``(action, token, history)`` with action ``"enter"``, ``"step"`` or ``"exit"``.
MARKOV_KIND = "_markov"

#: Default bound on ``support size * prod(batch_shape)`` of one enumerated site
#: (2**26 entries: 256 MiB of float32 log-densities for that site alone).
DEFAULT_MAX_ENUM_SIZE = 2**26


def _unwrap(fn: Any) -> Any:
    """The innermost distribution behind expand/mask/NonReparameterized wrappers."""
    while hasattr(fn, "base_dist") and not hasattr(fn, "reinterpreted_batch_ndims"):
        fn = fn.base_dist
    return fn


def support_size(fn: Any) -> int | None:
    """Number of values in ``fn``'s finite support, without enumerating it.

    Returns ``None`` when the size is only known by enumerating (e.g. a support
    whose bounds are traced arrays).

    Example:
        >>> import jax.numpy as jnp, jsvi.distributions as dist
        >>> support_size(dist.Categorical(logits=jnp.zeros(5))), support_size(dist.Bernoulli(0.3))
        (5, 2)
    """
    base = _unwrap(fn)
    support = getattr(base, "support", None)
    if isinstance(support, constraints.Boolean):
        return 2
    if isinstance(support, constraints.OneHot):
        return int(base.event_shape[-1])
    if isinstance(support, constraints.IntegerInterval):
        try:
            low = np.min(np.asarray(support.lower_bound))
            high = np.max(np.asarray(support.upper_bound))
        except Exception:  # traced bounds: only enumeration tells
            return None
        return int(high - low + 1)
    return None


class enum(Handler):
    """Enumerate the support of sites marked ``infer={"enumerate": "parallel"}``.

    Sites that already have a value (observed, replayed from a guide, substituted)
    are left alone. Place ``enum`` outside ``replay`` so that sites the guide
    provides are not enumerated again.

    Args:
        fn: the model or guide to run.
        first_available_dim: the dim (negative) the first enumerated site of a run
            takes; the next takes one further left. Use ``-(max_plate_nesting + 1)``
            (the default when ``max_plate_nesting`` is given), or continue after
            the dims a guide used.
        max_plate_nesting: how many dims plates may use; a site in more vectorized
            plates, or in a plate at a dim further left, is an error. Defaults to
            ``-first_available_dim - 1``.
        max_enum_size: the largest ``support size * prod(batch_shape)`` one
            enumerated site may have.
        chain_reducer: how ``jsvi.scan`` sums enumerated sites out of its steps:
            a callable ``ChainLayout -> reducer`` (see ``jsvi.core.scan``);
            ``TraceEnum_ELBO`` gives the forward algorithm. Without one, an
            enumerated site inside ``jsvi.scan`` is an error.
        sequential_values: for sites marked ``"sequential"``: a dict site name ->
            index into the support (an int array); the site takes that one value
            (every element of its batch alike) and is marked
            ``infer["_sequential_size"]`` (its support size). A site missing from
            the dict takes index 0. ``None``: a sequential site is an error (only
            ``TraceEnum_ELBO`` sums them out, one value at a time).

    Raises:
        SiteError: a site marked for enumeration has no finite support, or asks
            for a strategy other than ``"parallel"``.
        ShapeError: a site sits in more plates than ``max_plate_nesting``, or its
            batch shape reaches the dim its enumeration needs.
        ArgumentError: an enumerated site's support is larger than
            ``max_enum_size`` allows (the message gives the size).

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     with jsvi.plate("data", 4):
        ...         z = jsvi.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        >>> tr = handlers.trace(enum(model, max_plate_nesting=1)).get_trace()
        >>> tr["z"].value.shape, tr["z"].infer["_enumerate_dim"]
        ((2, 1), -2)
    """

    def __init__(
        self,
        fn: ModelFn | None = None,
        first_available_dim: int | None = None,
        max_plate_nesting: int | None = None,
        max_enum_size: int = DEFAULT_MAX_ENUM_SIZE,
        chain_reducer: Any = None,
        sequential_values: Any = None,
    ):
        super().__init__(fn)
        if first_available_dim is None and max_plate_nesting is None:
            raise ArgumentError(
                "enum: give max_plate_nesting (or first_available_dim), e.g. "
                "enum(model, max_plate_nesting=1) for a model with one plate."
            )
        for name, value in (
            ("first_available_dim", first_available_dim),
            ("max_plate_nesting", max_plate_nesting),
            ("max_enum_size", max_enum_size),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                raise ArgumentError(f"enum: {name} must be an int, got {value!r}.")
        if max_plate_nesting is not None and max_plate_nesting < 0:
            raise ArgumentError(
                f"enum: max_plate_nesting must be >= 0, got {max_plate_nesting}."
            )
        if first_available_dim is None:
            first_available_dim = -(max_plate_nesting + 1)
        if max_plate_nesting is None:
            max_plate_nesting = -first_available_dim - 1
        if first_available_dim > -(max_plate_nesting + 1):
            raise ArgumentError(
                f"enum: first_available_dim={first_available_dim} lies inside the "
                f"{max_plate_nesting} plate dims. Use a dim <= "
                f"{-(max_plate_nesting + 1)}."
            )
        if max_enum_size < 1:
            raise ArgumentError(
                f"enum: max_enum_size must be >= 1, got {max_enum_size}."
            )
        self.first_available_dim = first_available_dim
        self.max_plate_nesting = max_plate_nesting
        self.max_enum_size = max_enum_size
        self.chain_reducer = chain_reducer
        self.sequential_values = sequential_values

    def scan_first_dim(self) -> int:
        """The dim right of which every dim in use lies: ``jsvi.scan`` lays the
        enumerated sites of its steps out from here leftwards."""
        live = list(getattr(self, "_live", {}))
        return min(live + [self.first_available_dim + 1]) - 1

    def scan_child(self, first_available_dim: int) -> enum:
        """A fresh ``enum`` for one step of ``jsvi.scan``: it sees this handler's
        enumerated sites, and enumerates the step's sites from
        ``first_available_dim`` leftwards."""
        child = enum(
            None,
            first_available_dim=first_available_dim,
            max_plate_nesting=self.max_plate_nesting,
            max_enum_size=self.max_enum_size,
        )
        child._on_enter()
        child._live = dict(getattr(self, "_live", {}))
        return child

    def _on_enter(self) -> enum:
        self._live: dict[int, str] = {}
        # active markov chains, innermost last: [token, history, steps]
        self._chains: list[list[Any]] = []
        return self

    def process(self, msg: Message) -> None:
        if msg.kind == MARKOV_KIND:
            self._markov(*msg.args)
            return
        if msg.kind != "sample":
            return
        self._check_plates(msg)
        strategy = msg.infer.get("enumerate")
        if strategy is not None and msg.value is None and not msg.is_observed:
            if strategy == "sequential":
                self._sequential(msg)
            elif strategy != "parallel":
                raise SiteError(
                    f"sample site {msg.name!r}: infer['enumerate']={strategy!r} is not "
                    "supported. Use 'parallel' (every value at once, along a batch "
                    "dim) or 'sequential', or remove the option to sample the site."
                )
            else:
                self._enumerate(msg)
        if self._live:
            msg.infer = {**msg.infer, ENUM_LIVE_KEY: dict(self._live)}

    def _markov(self, action: str, token: Any, history: int) -> None:
        """Track ``jsvi.markov`` steps; forget sites more than ``history`` back."""
        if action == "enter":
            self._chains.append([token, history, []])
            return
        chain = next((c for c in self._chains if c[0] is token), None)
        if chain is None:
            return
        if action == "exit":
            self._chains.remove(chain)
            return
        steps = chain[2]
        steps.append([])
        while len(steps) > history + 1:
            gone = set(steps.pop(0))
            self._live = {d: n for d, n in self._live.items() if n not in gone}

    def _check_plates(self, msg: Message) -> None:
        for frame in msg.cond_indep_stack:
            if frame.vectorized and -frame.dim > self.max_plate_nesting:
                depth = sum(f.vectorized for f in msg.cond_indep_stack)
                raise ShapeError(
                    f"sample site {msg.name!r}: sits in plate {frame.name!r} at dim "
                    f"{frame.dim} ({depth} vectorized plates), but max_plate_nesting="
                    f"{self.max_plate_nesting} reserves only dims -1 .. "
                    f"{-self.max_plate_nesting} for plates. Pass "
                    f"max_plate_nesting={-frame.dim} (or more) to the estimator."
                )

    def _enumerate(self, msg: Message) -> None:
        fn, name = msg.fn, msg.name
        if not getattr(fn, "has_enumerate_support", False):
            raise SiteError(
                f"sample site {name!r}: marked infer={{'enumerate': 'parallel'}}, but "
                f"{type(_unwrap(fn)).__name__} (support "
                f"{getattr(fn, 'support', '?')!r}) has no "
                "finite support to enumerate. Remove the option and let the guide "
                "sample the site, or use a discrete distribution."
            )
        dim = self.first_available_dim
        while dim in self._live:
            dim -= 1
        batch_shape: Shape = tuple(fn.batch_shape)
        if len(batch_shape) >= -dim and batch_shape[dim] != 1:
            raise ShapeError(
                f"sample site {name!r}: batch_shape {batch_shape} has size "
                f"{batch_shape[dim]} at dim {dim}, but enumeration puts its support at dim {dim} (left of the "
                f"{self.max_plate_nesting} plate dims and "
                f"{self.first_available_dim - dim} enumerated dims in use), which the "
                "batch shape already uses. Declare every batch dim with a plate (or "
                "move it into the event with .to_event(n)), or raise "
                "max_plate_nesting."
            )
        size = support_size(fn)
        if size is not None:
            self._check_size(name, size, batch_shape)
        values = fn.enumerate_support(expand=False)
        size = int(values.shape[0])
        self._check_size(name, size, batch_shape)
        event_shape = tuple(fn.event_shape)
        msg.value = values.reshape((size,) + (1,) * (-dim - 1) + event_shape)
        msg.infer = {**msg.infer, ENUM_DIM_KEY: dim}
        self._live[dim] = name
        for chain in self._chains:
            if chain[2]:
                chain[2][-1].append(name)

    def _sequential(self, msg: Message) -> None:
        """Give a sequential site the one support value ``sequential_values`` picks."""
        fn, name = msg.fn, msg.name
        if self.sequential_values is None:
            raise SiteError(
                f"sample site {name!r}: marked infer={{'enumerate': 'sequential'}}, "
                "which only TraceEnum_ELBO sums out. Use TraceEnum_ELBO, or mark the "
                "site 'parallel'."
            )
        if not getattr(fn, "has_enumerate_support", False):
            raise SiteError(
                f"sample site {name!r}: marked infer={{'enumerate': 'sequential'}}, "
                f"but {type(_unwrap(fn)).__name__} has no finite support to "
                "enumerate. Remove the option, or use a discrete distribution."
            )
        values = fn.enumerate_support(expand=False)
        size = int(values.shape[0])
        index = self.sequential_values.get(name, 0)
        shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
        value = values.reshape((size,) + tuple(fn.event_shape))[index]
        batch = tuple(fn.batch_shape)
        msg.value = jnp.broadcast_to(
            value.reshape((1,) * len(batch) + tuple(fn.event_shape)), shape
        )
        msg.infer = {**msg.infer, SEQUENTIAL_SIZE_KEY: size}

    def _check_size(self, name: str, size: int, batch_shape: Shape) -> None:
        total = size * math.prod(batch_shape)
        if total > self.max_enum_size:
            raise ArgumentError(
                f"sample site {name!r}: enumerating its support of {size} values over "
                f"batch_shape {batch_shape} needs {total} log-density entries, more "
                f"than max_enum_size={self.max_enum_size}. Sample the site in the guide "
                "instead (remove infer['enumerate']), or raise max_enum_size if the "
                "memory is there."
            )
