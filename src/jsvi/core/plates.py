"""Plates: vectorized and sequential ``plate``, subsample index draws, and the
handler that puts a plate's frame on the sites inside it.

May import: ``jsvi.core.runtime``, ``jsvi.core._names``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsvi._typing import Array, ArrayLike, shape_of
from jsvi.core._names import check_name, missing_key
from jsvi.core.runtime import CondIndepStackFrame, Handler, Message, apply_stack
from jsvi.errors import ArgumentError, ShapeError, SiteError

__all__ = ["plate", "plate_stack", "subsample_indices"]


def _subsample_default(msg: Message) -> Array:
    size, subsample_size = msg.args
    if subsample_size == size:
        return jnp.arange(size)
    if msg.rng_key is None:
        raise missing_key("plate", msg.name)
    return subsample_indices(msg.rng_key, size, subsample_size)


def subsample_indices(key: Any, size: int, subsample_size: int) -> Array:
    """``subsample_size`` distinct indices in ``[0, size)``, uniformly at random.

    Draws ``B + E`` independent indices, where the spare ``E`` is many times the
    expected number of repeats (``B**2 / (2N)``), and keeps the first ``B``
    distinct ones: no random bits for the other ``N - B`` indices. Repeats are
    found with one scatter into an ``N``-slot table while that table is small
    (``N`` at most ``_TABLE_PER_DRAW`` times the draws and at most ``_TABLE_MAX``
    slots); for larger ``N`` a stable sort of the draws finds them instead, with
    the same result, since a fresh ``N``-slot table per step would cost more than
    the rest of the step at very large ``N``. The procedure treats every
    index alike, so the resulting set is uniform over all subsets of that size,
    as a permutation would give. In the (vanishingly rare) case that fewer than
    ``B`` distinct indices come up, the whole draw is repeated with a fresh key
    until one has enough; an accepted draw is still uniform, by the same
    symmetry. The repeat is a ``while_loop`` around the single draw, so the
    compiled program holds one copy of it (a separate fallback branch doubled the
    compile time of a minibatch step). For ``subsample_size > size / 4`` a
    permutation is used instead.

    Args:
        key: a PRNG key.
        size: N, the plate's size.
        subsample_size: B, the number of indices.

    Returns:
        An int32 array of shape ``(subsample_size,)``.
    """
    if 4 * subsample_size > size:
        return jax.random.permutation(key, size)[:subsample_size]
    expected_repeats = subsample_size * subsample_size / (2 * size)
    return _distinct_indices(key, size, subsample_size, subsample_size + int(4 * expected_repeats) + 32)


_TABLE_PER_DRAW = 1000  # an N-slot table while N <= this many times the draws ...
_TABLE_MAX = 1 << 22  # ... and N <= this (16 MB of int32); a sort otherwise


def _first_occurrences(candidates: Array, size: int) -> Array:
    """Which entries of ``candidates`` are the first of their value (bool mask)."""
    total = candidates.shape[0]
    positions = jnp.arange(total, dtype=jnp.int32)
    if size <= min(_TABLE_PER_DRAW * total, _TABLE_MAX):
        first_claim = jnp.full(size, total, jnp.int32).at[candidates].min(positions)
        return first_claim[candidates] == positions
    # a stable sort keeps equal values in draw order: each run's head is the first
    values, order = jax.lax.sort((candidates, positions), num_keys=1, is_stable=True)
    head = jnp.concatenate([jnp.ones(1, bool), values[1:] != values[:-1]])
    return jnp.zeros(total, bool).at[order].set(head, unique_indices=True)


def _distinct_indices(key: Any, size: int, subsample_size: int, total: int) -> Array:
    """``subsample_indices``'s draw: the first ``subsample_size`` distinct of
    ``total`` uniform indices, the whole draw repeated until there are enough."""

    def draw(carry: tuple) -> tuple:
        key, _, _ = carry
        key, draw_key = jax.random.split(key)
        candidates = jax.random.randint(draw_key, (total,), 0, size, dtype=jnp.int32)
        is_first = _first_occurrences(candidates, size)
        rank = jnp.cumsum(is_first) - 1
        slot = jnp.where(is_first & (rank < subsample_size), rank, subsample_size)
        picked = jnp.zeros(subsample_size, candidates.dtype).at[slot].set(
            candidates, mode="drop"
        )
        return key, picked, rank[-1] + 1 >= subsample_size

    init = (key, jnp.zeros(subsample_size, jnp.int32), jnp.zeros((), bool))
    _, picked, _ = jax.lax.while_loop(lambda carry: ~carry[2], draw, init)
    return picked


def _broadcast_site(msg: Message, frame: CondIndepStackFrame) -> None:
    """Expand a site's batch shape so that it has ``frame``'s size at its dim."""
    batch_shape = list(msg.fn.batch_shape)
    ndim = -frame.dim
    if len(batch_shape) < ndim:
        batch_shape = [1] * (ndim - len(batch_shape)) + batch_shape
    current = batch_shape[frame.dim]
    if current == frame.subsample_size:
        if len(batch_shape) == len(msg.fn.batch_shape):
            return
    elif current != 1:
        local = (
            " If they come from a jsvi.param of the plate's full size, declare it "
            "inside the plate with event_dim=... so that it is subsampled with it."
            if current == frame.size
            else ""
        )
        raise ShapeError(
            f"sample site {msg.name!r}: batch_shape {tuple(msg.fn.batch_shape)} has "
            f"size {current} at dim {frame.dim}, but plate {frame.name!r} has size "
            f"{frame.subsample_size}. Give the distribution's parameters size "
            f"{frame.subsample_size} (or 1) at dim {frame.dim}, declare event dims "
            f"with .to_event(n), or move {msg.name!r} outside the plate.{local}"
        )
    batch_shape[frame.dim] = frame.subsample_size
    # Distributions that can expand lazily keep their parameters' shapes and
    # broadcast log-densities instead (no per-element work repeated over the plate).
    expand = getattr(msg.fn, "_expand_lazily", None) or msg.fn.expand
    msg.fn = expand(tuple(batch_shape))


class _PlateFrame(Handler):
    """Applies one plate frame (vectorized, or one sequential iteration) to sites."""

    def __init__(self, frame: CondIndepStackFrame, indices: Any = None):
        super().__init__()
        self.frame = frame
        self.indices = indices

    def process(self, msg: Message) -> None:
        frame = self.frame
        if msg.kind == "_frames":
            msg.cond_indep_stack = (frame,) + msg.cond_indep_stack
            if "indices" in msg.kwargs:
                msg.kwargs["indices"][frame.name] = self.indices
            return
        if msg.kind not in ("sample", "plate"):
            return
        msg.cond_indep_stack = (frame,) + msg.cond_indep_stack
        if msg.kind != "sample":
            return
        if frame.subsample_size != frame.size:
            ratio = frame.size / frame.subsample_size
            msg.scale = ratio if msg.scale is None else msg.scale * ratio
        if frame.vectorized:
            _broadcast_site(msg, frame)


def _enclosing_frames() -> tuple[CondIndepStackFrame, ...]:
    msg = Message(kind="_frames", name="_jsvi/frames")
    return apply_stack(msg).cond_indep_stack


class plate:
    """A set of conditionally independent sites: vectorized or sequential.

    ``with plate(name, size) as idx:`` is vectorized: sites inside get a batch dim
    of size ``subsample_size`` (or ``size``) at ``dim``, counted from the right,
    allocated automatically left of enclosing plates when ``dim`` is None.
    ``for i in plate(name, size):`` is sequential: each iteration is independent of
    the others (it matters for ``TraceGraph_ELBO``).

    With ``subsample_size`` the plate draws that many distinct indices from the
    enclosing ``seed`` key (or takes them from ``subsample``) and scales the
    log-density of the sites inside by ``size / subsample_size``, which keeps the
    ELBO estimate unbiased. A guide's indices are replayed into the model's plate
    of the same name.

    Args:
        name: plate name.
        size: the full size of the data dimension. It may be left out when
            ``subsample`` is given: the plate then has ``len(subsample)`` elements
            and scales nothing (as in Pyro).
        subsample_size: number of elements used in one run (default: ``size``).
        dim: the batch dim to use (negative), or None to allocate one.
        subsample: explicit indices (1-D integer array) instead of drawing them.

    Example:
        >>> import jax.numpy as jnp, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model(x):
        ...     with jsvi.plate("data", x.shape[0]):
        ...         jsvi.sample("x", dist.Normal(0.0, 1.0), obs=x)
        >>> tr = handlers.trace(model).get_trace(jnp.zeros(3))
        >>> tr["x"]["fn"].batch_shape
        (3,)
    """

    def __init__(
        self,
        name: str,
        size: int | None = None,
        subsample_size: int | None = None,
        dim: int | None = None,
        subsample: ArrayLike | None = None,
    ):
        check_name("plate", name)
        if size is None:
            if subsample is None:
                raise ArgumentError(
                    f"plate {name!r}: size is required unless subsample is given "
                    "(then the plate's size is the number of indices). Pass e.g. "
                    "jsvi.plate(name, x.shape[0])."
                )
            size = shape_of(subsample)[0] if shape_of(subsample) else 0
        size = _as_int(size, f"plate {name!r}: size")
        if size > _MAX_PLATE_SIZE:
            raise ArgumentError(
                f"plate {name!r}: size {size} is past the largest index an int32 can "
                f"hold ({_MAX_PLATE_SIZE}); indices are int32. Split the plate into "
                "two nested plates, or subsample a smaller index set."
            )
        if size < 1:
            raise ArgumentError(f"plate {name!r}: size must be >= 1, got {size}.")
        if subsample is not None:
            sub_shape = shape_of(subsample)
            if len(sub_shape) != 1:
                raise ShapeError(
                    f"plate {name!r}: subsample must be a 1-D array of indices, got "
                    f"shape {sub_shape}. Pass e.g. jnp.arange(start, stop)."
                )
            if subsample_size is not None and subsample_size != sub_shape[0]:
                raise ShapeError(
                    f"plate {name!r}: subsample has {sub_shape[0]} indices but "
                    f"subsample_size={subsample_size}. Drop one of the two."
                )
            subsample_size = sub_shape[0]
        if subsample_size is None:
            subsample_size = size
        subsample_size = _as_int(subsample_size, f"plate {name!r}: subsample_size")
        if not 1 <= subsample_size <= size:
            raise ArgumentError(
                f"plate {name!r}: subsample_size must be in [1, {size}] (the plate's "
                f"size), got {subsample_size}. Draw at most {size} elements, or leave "
                "subsample_size out to use them all."
            )
        if dim is not None and (not isinstance(dim, int) or dim >= 0):
            raise ArgumentError(
                f"plate {name!r}: dim must be a negative int (counted from the right), "
                f"got {dim!r}."
            )
        self.name = name
        self.size = size
        self.subsample_size = subsample_size
        self.dim = dim
        self.used = False  # entered (``with``) or iterated (``for``)
        msg = Message(
            kind="plate",
            name=name,
            args=(size, subsample_size),
            kwargs={"plate": self},
            value=None if subsample is None else jnp.asarray(subsample),
            default=_subsample_default,
        )
        apply_stack(msg)
        indices = msg.value
        if shape_of(indices) != (subsample_size,):
            raise ShapeError(
                f"plate {name!r}: got subsample indices of shape {shape_of(indices)} "
                f"(from the guide's plate of the same name?), but this plate has "
                f"subsample_size={subsample_size}. Use the same size and "
                "subsample_size for the plate in model and guide."
            )
        self._indices = indices
        self._frame_handler: _PlateFrame | None = None

    def __enter__(self) -> Array:
        self.used = True
        outer = [f for f in _enclosing_frames() if f.vectorized]
        used = {f.dim for f in outer}
        if any(f.name == self.name for f in outer):
            raise SiteError(
                f"plate {self.name!r}: entered inside itself. Plates nest only with "
                "distinct names."
            )
        if self.dim is None:
            dim = -1
            while dim in used:
                dim -= 1
        else:
            dim = self.dim
            if dim in used:
                other = next(f.name for f in outer if f.dim == dim)
                raise ShapeError(
                    f"plate {self.name!r}: dim {dim} is already used by the enclosing "
                    f"plate {other!r}. Give the plates distinct dims, or leave dim=None "
                    "to allocate one."
                )
        frame = CondIndepStackFrame(self.name, dim, self.size, self.subsample_size)
        self._frame_handler = _PlateFrame(frame, self._indices)
        self._frame_handler.__enter__()
        return self._indices

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._frame_handler is not None:
            self._frame_handler.__exit__(exc_type, exc, tb)
            self._frame_handler = None

    def __iter__(self) -> Iterator[Any]:
        self.used = True
        indices = self._indices
        if self.subsample_size == self.size:
            values: Any = range(self.size)
        elif isinstance(indices, jax.core.Tracer):
            values = [indices[i] for i in range(self.subsample_size)]
        else:
            values = [int(i) for i in np.asarray(indices)]
        for counter, value in enumerate(values):
            frame = CondIndepStackFrame(
                self.name, None, self.size, self.subsample_size, counter
            )
            with _PlateFrame(frame):
                yield value

    def __len__(self) -> int:
        return self.subsample_size


_MAX_PLATE_SIZE = 2**31 - 1


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ArgumentError(f"{where} must be an int, got {value!r}.")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    raise ArgumentError(
        f"{where} must be a concrete int, got {value!r}. Plate sizes fix array shapes, "
        "so they must be known when the model is traced (use x.shape[0], not a traced "
        "value)."
    )


@contextlib.contextmanager
def plate_stack(
    prefix: str, sizes: Sequence[int], rightmost_dim: int = -1
) -> Iterator[None]:
    """Nested vectorized plates ``prefix_0``, ``prefix_1``, ... for a batch shape.

    The plate for ``sizes[-1]`` is ``prefix_0`` at ``rightmost_dim``, the one for
    ``sizes[-2]`` is ``prefix_1`` at ``rightmost_dim - 1``, and so on, so sites
    inside get batch shape ``tuple(sizes)`` (as NumPyro's ``plate_stack``).

    Args:
        prefix: the plates' name prefix.
        sizes: the batch shape the plates span.
        rightmost_dim: the dim of the rightmost plate (negative).

    Example:
        >>> import jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     with jsvi.plate_stack("batch", (2, 3)):
        ...         jsvi.sample("z", dist.Normal(0.0, 1.0))
        >>> handlers.trace(handlers.seed(model, rng_key=0)).get_trace()["z"].value.shape
        (2, 3)
    """
    if isinstance(rightmost_dim, bool) or not isinstance(rightmost_dim, int) or (
        rightmost_dim >= 0
    ):
        raise ArgumentError(
            f"plate_stack {prefix!r}: rightmost_dim must be a negative int, got "
            f"{rightmost_dim!r}."
        )
    with contextlib.ExitStack() as stack:
        for i, size in enumerate(reversed(tuple(sizes))):
            stack.enter_context(plate(f"{prefix}_{i}", size, dim=rightmost_dim - i))
        yield
