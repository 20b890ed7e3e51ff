"""Log-space sum-product over enumerated dims that respects plates.

The model's log-density factors are arrays whose dims are either plate dims
(``-1 .. -max_plate_nesting``) or enumeration dims further left (one per
enumerated site). Summing the enumerated variables out of
``prod(exp(factors))`` is a sum-product over a plated factor graph: a variable in
a plate is summed once per plate element, and a product over a plate turns into a
sum of log-densities over that plate's dim. ``contract_to_terms`` does it by
variable elimination over plate sets (ordinals), deepest first, after Obermeyer et
al. (2019), "Tensor Variable Elimination for Plated Factor Graphs":

1. take the factors of the deepest ordinal ``L`` that still involve variables;
2. split them into groups that share a variable local to ``L`` (one whose plates
   are exactly ``L``) and sum those variables out of each group
   (``sum_product``: a contraction path from ``opt_einsum``, each step in log space);
3. a result that still involves outer variables has the plates they do not sit in
   summed out (a product over the plate elements, times the plate's subsample
   ratio) and moves to the ordinal of those variables; a result with no variables
   left is a finished log-term of ordinal ``L``.

Underflow guard: a step whose broadcast intermediate is small is evaluated as an
exact ``logsumexp`` of a sum; a larger one as an ``einsum`` of ``exp(f - max f)``
(maxima over the summed dims, behind ``stop_gradient``) with the maxima added back.

May import: ``jsvi._typing``, ``jsvi.errors``, ``jsvi.core``; external: ``opt_einsum``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import opt_einsum

from jsvi._typing import Array
from jsvi.errors import SiteError

__all__ = [
    "Factor",
    "Variable",
    "contract_to_terms",
    "logsumexp",
    "sum_product",
    "to_factor",
]

Ordinal = frozenset  # a set of plate names

# A step is evaluated as logsumexp(sum) when its broadcast intermediate has at most
# this many times the entries of its largest input or output.
_BROADCAST_FACTOR = 4


class Factor(NamedTuple):
    """A log-density over named dims.

    Attributes:
        log: array with one axis per entry of ``dims``.
        dims: the negative positional dims the axes stand for, left to right.
    """

    log: Array
    dims: tuple[int, ...]

    def size(self, dim: int) -> int:
        return self.log.shape[self.dims.index(dim)] if dim in self.dims else 1


class Variable(NamedTuple):
    """An enumerated site as the contraction sees it.

    Attributes:
        name: the site's name (for error messages).
        ordinal: names of the vectorized plates the site sits in.
    """

    name: str
    ordinal: frozenset


def to_factor(x: Array) -> Factor:
    """Name the dims of a positional array, dropping those of size 1.

    Example:
        >>> import jax.numpy as jnp
        >>> f = to_factor(jnp.zeros((3, 1, 5)))
        >>> f.dims, f.log.shape
        ((-3, -1), (3, 5))
    """
    x = jnp.asarray(x)
    dims = tuple(d for d in range(-x.ndim, 0) if x.shape[d] != 1)
    return Factor(x.reshape(tuple(x.shape[d] for d in dims)), dims)


def to_positional(f: Factor, rank: int) -> Array:
    """The inverse of ``to_factor``: size-1 axes at the dims ``f`` does not have."""
    shape = tuple(f.size(d) for d in range(-rank, 0))
    return f.log.reshape(shape)


def _letters(dims: Iterable[int]) -> dict[int, str]:
    """One einsum symbol per dim (ASCII letters first, then further symbols)."""
    ordered = sorted(set(dims))
    return {d: opt_einsum.get_symbol(i) for i, d in enumerate(ordered)}


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def logsumexp(x: Array, axes: tuple[int, ...]) -> Array:
    """``log(sum(exp(x)))`` over ``axes``, shifted by the (finite) maximum.

    Its derivative reuses the shifted exponentials of the forward pass:
    ``d out = sum(exp(x - m) * dx) / sum(exp(x - m))``.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(logsumexp(jnp.array([-1000.0, -1000.0]), (0,))), 3)  # no underflow
        -999.307
    """
    if _summed_size(x, axes) <= _UNROLL_MAX:
        slices = _summed_slices(x, axes)
        m = _finite_max_of(slices)
        return jnp.log(sum(jnp.exp(s - m) for s in slices)) + m
    m = _finite_max(x, axes)
    return jnp.log(jnp.sum(jnp.exp(x - m), axis=axes)) + jnp.squeeze(m, axis=axes)


@logsumexp.defjvp
def _logsumexp_jvp(axes: tuple[int, ...], primals: tuple, tangents: tuple) -> tuple:
    (x,), (dx,) = primals, tangents
    if _summed_size(x, axes) <= _UNROLL_MAX:
        slices, dslices = _summed_slices(x, axes), _summed_slices(dx, axes)
        m = _finite_max_of(slices)
        es = [jnp.exp(s - m) for s in slices]
        total = sum(es)
        return jnp.log(total) + m, sum(e * d for e, d in zip(es, dslices)) / total
    m = _finite_max(x, axes)
    e = jnp.exp(x - m)
    total = jnp.sum(e, axis=axes)
    out = jnp.log(total) + jnp.squeeze(m, axis=axes)
    return out, jnp.sum(e * dx, axis=axes) / total


# Summing over at most this many values (an enumerated site's support, say), the
# sum is written out slice by slice: elementwise operations that XLA fuses into
# one loop over the kept dims. As a reduction over a short leading axis it ran
# 3-4x slower on CPU (a 3-component mixture over 100,000 points: 4.0 ms a step
# against 0.9 ms unrolled, gradient included).
_UNROLL_MAX = 16


def _summed_size(x: Array, axes: tuple[int, ...]) -> int:
    """How many values are summed; past ``_UNROLL_MAX`` when the summed axes are
    not the leading ones (there, slicing would transpose the whole array first:
    a chain's forward step, summing the middle axis of (K, K, N), ran 1.3x
    slower than the reduction)."""
    if tuple(axes) != tuple(range(len(axes))):
        return _UNROLL_MAX + 1
    return math.prod(x.shape[a] for a in axes)


def _summed_slices(x: Array, axes: tuple[int, ...]) -> list[Array]:
    """The slices of ``x`` at each combination of indices of ``axes``."""
    lead = tuple(range(len(axes)))
    x = jnp.moveaxis(x, axes, lead) if tuple(axes) != lead else x
    x = x.reshape((-1,) + x.shape[len(axes) :])
    return [x[k] for k in range(x.shape[0])]


def _finite_max_of(slices: Sequence[Array]) -> Array:
    m = slices[0]
    for s in slices[1:]:
        m = jnp.maximum(m, s)
    return jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))


def _finite_max(x: Array, axes: tuple[int, ...]) -> Array:
    m = jnp.max(x, axis=axes, keepdims=True)
    return jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))


def _step(
    operands: Sequence[Factor],
    summed: set[int],
    sizes: Mapping[int, int],
    maximize: bool = False,
) -> Factor:
    """``log sum_{summed} prod exp(operands)`` for a few operands (``max`` in
    place of ``sum`` when ``maximize``)."""
    union = sorted(set().union(*(f.dims for f in operands)))
    out_dims = tuple(d for d in union if d not in summed)
    if len(operands) == 1 and not summed:
        return operands[0]
    union_size = math.prod(sizes[d] for d in union)
    out_size = math.prod(sizes[d] for d in out_dims)
    biggest = max([out_size] + [math.prod(f.log.shape) for f in operands])
    if maximize or union_size <= _BROADCAST_FACTOR * biggest or len(operands) == 1:
        total = None
        for f in operands:
            aligned = jnp.expand_dims(
                f.log, tuple(i for i, d in enumerate(union) if d not in f.dims)
            )
            total = aligned if total is None else total + aligned
        axes = tuple(i for i, d in enumerate(union) if d in summed)
        if axes:
            total = jnp.max(total, axis=axes) if maximize else logsumexp(total, axes)
        return Factor(total, out_dims)
    letters = _letters(union)
    shifted, shift = [], jnp.zeros(())
    for f in operands:
        axes = tuple(i for i, d in enumerate(f.dims) if d in summed)
        if axes:
            m = _finite_max(f.log, axes)
            m_kept = jnp.squeeze(m, axis=axes)
        else:
            m = m_kept = jax.lax.stop_gradient(
                jnp.where(jnp.isfinite(f.log), f.log, 0.0)
            )
        shifted.append(jnp.exp(f.log - m))
        kept = [d for d in f.dims if d not in summed]
        missing = tuple(i for i, d in enumerate(out_dims) if d not in kept)
        shift = shift + jnp.expand_dims(m_kept, missing)
    eq = ",".join("".join(letters[d] for d in f.dims) for f in operands)
    eq += "->" + "".join(letters[d] for d in out_dims)
    return Factor(jnp.log(jnp.einsum(eq, *shifted)) + shift, out_dims)


def sum_product(
    factors: Sequence[Factor], summed: Iterable[int], maximize: bool = False
) -> Factor:
    """``log sum_{summed dims} prod_i exp(factors[i])``, keeping every other dim.

    With ``maximize`` the sums become maxima (the max-product semiring: the
    log-density of the best assignment of the ``summed`` dims).

    The order of pairwise steps comes from ``opt_einsum.contract_path``; each dim
    is summed at the first step after which no remaining operand has it.

    Args:
        factors: log-densities over named dims.
        summed: the dims to sum out.

    Returns:
        A ``Factor`` over the remaining dims, in ascending order.

    Example:
        >>> import jax.numpy as jnp
        >>> a = Factor(jnp.log(jnp.array([0.25, 0.75])), (-2,))
        >>> b = Factor(jnp.log(jnp.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])), (-2, -1))
        >>> out = sum_product([a, b], [-2])
        >>> out.dims, [round(float(v), 4) for v in jnp.exp(out.log)]
        ((-1,), [0.125, 0.5, 0.375])
    """
    summed = set(summed)
    sizes: dict[int, int] = {}
    for f in factors:
        for d, n in zip(f.dims, f.log.shape):
            sizes[d] = n
    summed &= set(sizes)
    ops = list(factors)
    if len(ops) == 1:
        return _step(ops, summed, sizes, maximize)
    letters = _letters(sizes)
    eq = ",".join("".join(letters[d] for d in f.dims) for f in ops)
    out = "".join(letters[d] for d in sorted(sizes) if d not in summed)
    path, _ = opt_einsum.contract_path(
        eq + "->" + out, *[f.log.shape for f in ops], shapes=True, optimize="auto"
    )
    for positions in path:
        chosen = [ops[i] for i in positions]
        ops = [f for i, f in enumerate(ops) if i not in positions]
        elsewhere = set().union(*(f.dims for f in ops)) if ops else set()
        here = set().union(*(f.dims for f in chosen))
        ops.append(_step(chosen, (here & summed) - elsewhere, sizes, maximize))
    (result,) = ops
    return result


class PlateInfo(NamedTuple):
    """A vectorized plate as the contraction sees it: its dim, its number of
    present elements, and the factor ``size / subsample_size``."""

    dim: int
    subsample_size: int
    ratio: float


def _eliminate(f: Factor, plates: Sequence[PlateInfo]) -> Factor:
    """Product over the elements of ``plates`` in log space, with their ratios."""
    log, dims = f.log, list(f.dims)
    factor = 1.0
    for p in plates:
        if p.dim in dims:
            axis = dims.index(p.dim)
            log = jnp.sum(log, axis=axis)
            dims.pop(axis)
        else:
            factor *= p.subsample_size
        factor *= p.ratio
    return Factor(log * factor if factor != 1.0 else log, tuple(dims))


def _components(group: Sequence[Factor], local: set[int]) -> list[list[Factor]]:
    """Split ``group`` into sets of factors connected through ``local`` dims."""
    parent = list(range(len(group)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[int, int] = {}
    for i, f in enumerate(group):
        for d in f.dims:
            if d in local:
                if d in owner:
                    parent[find(i)] = find(owner[d])
                else:
                    owner[d] = i
    comps: dict[int, list[Factor]] = {}
    for i, f in enumerate(group):
        comps.setdefault(find(i), []).append(f)
    return list(comps.values())


def contract_to_terms(
    factors: Sequence[tuple[Factor, frozenset]],
    variables: Mapping[int, Variable],
    plates: Mapping[str, PlateInfo],
    free: Mapping[int, Variable] | None = None,
    maximize: bool = False,
) -> list[tuple[Factor, frozenset]]:
    """Sum the enumerated ``variables`` out of a product of plated factors.

    Args:
        factors: ``(log-density, ordinal)`` pairs; a factor's ordinal is the set of
            plates its site sits in. Log-densities carry no plate subsample ratio
            (it is applied when a plate is summed out).
        variables: enumeration dim -> the variable summed out along it.
        plates: plate name -> its dim, subsample size and ratio.
        free: enumeration dims left in the result (a guide's enumerated sites,
            whose expectation is taken later), with their variables.
        maximize: maximize the variables out instead of summing them
            (max-product; for MAP assignments).

    Returns:
        ``(log-term, ordinal)`` pairs whose sum over each term's plate elements
        (times the ratios of its plates) is ``log sum_variables prod exp(factors)``.
        Terms keep the plate dims of their ordinal and the ``free`` dims.

    Raises:
        SiteError: the model cannot be contracted exactly: a variable is used
            outside its plates, two variables of different plates meet in a factor
            of a plate both sit in, or a ``free`` variable inside a plate meets a
            summed variable outside it.
    """
    free = dict(free or {})
    pending: dict[frozenset, list[Factor]] = {}
    done: list[tuple[Factor, frozenset]] = []
    for f, ordinal in factors:
        if any(d in variables for d in f.dims):
            pending.setdefault(frozenset(ordinal), []).append(f)
        else:
            done.append((f, frozenset(ordinal)))
    while pending:
        leaf = max(pending, key=lambda o: (len(o), sorted(o)))
        group = pending.pop(leaf)
        for f in group:
            for d in f.dims:
                if d in variables and not variables[d].ordinal <= leaf:
                    raise SiteError(
                        f"enumerated site {variables[d].name!r}: sits in plates "
                        f"{sorted(variables[d].ordinal)}, but a site in plates "
                        f"{sorted(leaf)} depends on it. A site may only depend on "
                        "enumerated sites whose plates it shares."
                    )
        local = {d for d, v in variables.items() if v.ordinal == leaf}
        for comp in _components(group, local):
            here = set().union(*(f.dims for f in comp))
            result = sum_product(comp, here & local, maximize)
            rest = [d for d in result.dims if d in variables]
            if not rest:
                done.append((result, leaf))
                continue
            target = frozenset().union(*(variables[d].ordinal for d in rest))
            if target == leaf:
                names = sorted(variables[d].name for d in rest)
                raise SiteError(
                    f"enumerated sites {names}: sit in different plates but meet in a "
                    f"factor of plates {sorted(leaf)}, so they cannot be summed out "
                    "exactly. Sample one of them in the guide instead of enumerating it."
                )
            _check_free(result, free, target, leaf)
            result = _eliminate(result, [plates[p] for p in sorted(leaf - target)])
            pending.setdefault(target, []).append(result)
    return done


def _check_free(
    f: Factor, free: Mapping[int, Variable], target: frozenset, leaf: frozenset
) -> None:
    for d in f.dims:
        v = free.get(d)
        if v is not None and not v.ordinal <= target:
            raise SiteError(
                f"guide site {v.name!r}: enumerated in the guide inside plates "
                f"{sorted(v.ordinal)}, but the model sums an enumerated site of plates "
                f"{sorted(target)} over plate(s) {sorted(leaf - target)} that depend "
                f"on {v.name!r}; the expectation over {v.name!r} would not factorize. "
                f"Sample {v.name!r} in the guide (drop 'enumerate'), or enumerate it "
                "in the model instead."
            )
