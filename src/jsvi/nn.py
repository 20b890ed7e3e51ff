"""Neural networks in models and guides: register a Flax or an Equinox module's
weights with ``jsvi.param`` in one line.

``jsvi.param`` already takes a pytree of weights; these helpers split a module
into its trainable weights (a pytree, registered as one param) and the rest
(structure, configuration, non-trainable state), and return a function that
applies the module with the weights the current run supplies: the initial
weights in ``svi_init``, the trained ones in ``svi_update``, ``Predictive`` and
``get_params``. Flax and Equinox are optional extras, imported on first use.

May import (within jsvi): ``jsvi.core.primitives``, ``jsvi._typing``,
``jsvi.errors``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jsvi._typing import Shape
from jsvi.core.primitives import param
from jsvi.errors import ArgumentError, JsviError, ShapeError

__all__ = ["eqx_module", "flax_module"]


def _require(module: str, extra: str, where: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ArgumentError(
            f"{where}: needs the optional dependency {extra!r}, which is not "
            f"installed. Install it with `pip install {extra}`."
        ) from None


def _input_shapes(input_shape: Any, where: str) -> list[Shape] | None:
    """``input_shape`` as a list of shapes (one per positional input)."""
    if input_shape is None:
        return None
    if isinstance(input_shape, int):
        return [(input_shape,)]
    try:
        items = list(input_shape)
    except TypeError:
        items = None
    if items is not None and all(isinstance(s, int) for s in items):
        return [tuple(items)]
    if items is not None and all(
        isinstance(s, Sequence) and all(isinstance(d, int) for d in s) for s in items
    ):
        return [tuple(s) for s in items]
    raise ArgumentError(
        f"{where}: input_shape must be a shape such as (64,) or a list of shapes "
        f"(one per input), got {input_shape!r}."
    )


def _zeros(shapes: list[Shape]) -> list[jax.ShapeDtypeStruct]:
    dtype = jnp.result_type(float)
    return [jax.ShapeDtypeStruct(s, dtype) for s in shapes]


def _shapes_of(inputs: tuple) -> list[Shape]:
    return [tuple(jnp.shape(x)) for x in inputs]


def _mismatch(
    where: str, shapes: list[Shape], error: Exception, hint: str
) -> ShapeError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
    return ShapeError(
        f"{where}: the module cannot be applied to inputs of shapes {shapes} "
        f"({type(error).__name__}: {first}). {hint}"
    )


_SHAPE_ERRORS: tuple[type[Exception], ...] = (TypeError, ValueError)


def _shape_errors() -> tuple[type[Exception], ...]:
    """The errors a module raises for inputs it does not fit (flax adds its own)."""
    flax_errors = importlib.import_module("flax.errors") if _has("flax") else None
    extra = (flax_errors.FlaxError,) if flax_errors is not None else ()
    return _SHAPE_ERRORS + extra


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _applier(fn: Callable[..., Any], where: str, hint: str) -> Callable[..., Any]:
    """Wrap ``fn`` so a failure to apply the module names it and the shapes."""
    errors = _shape_errors()

    def apply(*inputs: Any, **kwargs: Any) -> Any:
        try:
            return fn(*inputs, **kwargs)
        except JsviError:
            raise
        except errors as e:  # the module's own error, with our context
            raise _mismatch(where, _shapes_of(inputs), e, hint) from e

    return apply


def flax_module(
    name: str, module: Any, input_shape: Shape | Sequence[Shape] | None = None
) -> Callable[..., Any]:
    """Register a Flax module's weights as the param ``name``; return its apply
    function.

    Works with ``flax.nnx`` modules (already initialized: their ``nnx.Param``
    variables are the initial weights; other state, such as batch statistics, is
    kept as it is) and with ``flax.linen`` modules (initialized here from
    ``input_shape`` with the key ``seed`` provides; only the ``"params"``
    collection is supported).

    Args:
        name: the param name; ``jsvi.get_params(...)[name]`` holds the weights
            (for nnx a nested dict, as ``nnx.to_pure_dict`` gives).
        module: a ``flax.nnx.Module`` or ``flax.linen.Module``.
        input_shape: the shape of one input (or a list of shapes, one per
            input). Required for linen; for nnx it is optional and checks that
            the module accepts such inputs.

    Returns:
        ``apply(*inputs, **kwargs)``: the module's output with this run's weights.

    Raises:
        ArgumentError: flax is not installed, or ``module`` is not a Flax module.
        ShapeError: the module cannot be applied to inputs of ``input_shape`` (or,
            when called, to the inputs given).

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> net = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
        >>> apply = flax_module("net", net, input_shape=(3,))
        >>> apply(jnp.ones((5, 3))).shape
        (5, 2)
    """
    where = f"flax_module {name!r}"
    if not isinstance(name, str):
        raise ArgumentError(f"flax_module: name must be a str, got {name!r}.")
    _require("flax", "flax", where)
    shapes = _input_shapes(input_shape, where)
    nnx = importlib.import_module("flax.nnx")
    linen = importlib.import_module("flax.linen")
    if isinstance(module, nnx.Module):
        return _nnx_module(name, module, shapes, nnx, where)
    if isinstance(module, linen.Module):
        return _linen_module(name, module, shapes, where)
    raise ArgumentError(
        f"{where}: expected a flax.nnx.Module or flax.linen.Module, got "
        f"{type(module).__name__}. For an Equinox module use jsvi.nn.eqx_module."
    )


def _nnx_module(name: str, module: Any, shapes: Any, nnx: Any, where: str):
    graphdef, weights, rest = nnx.split(module, nnx.Param, ...)
    hint = "Give it inputs whose last dims match its first layer."

    # Functions in newer flax; State methods in flax 0.10.
    to_pure = getattr(nnx, "to_pure_dict", None) or type(weights).to_pure_dict
    replace = getattr(nnx, "replace_by_pure_dict", None)
    replace = replace or type(weights).replace_by_pure_dict

    def build(pure: Any) -> Any:
        state = jax.tree.map(lambda x: x, weights)
        replace(state, pure)
        return nnx.merge(graphdef, state, rest)

    init = to_pure(weights)
    if shapes is not None:
        try:
            jax.eval_shape(lambda p, *xs: build(p)(*xs), init, *_zeros(shapes))
        except _shape_errors() as e:
            raise _mismatch(where, shapes, e, hint + " Or fix input_shape.") from e
    pure = param(name, init)
    return _applier(lambda *xs, **kw: build(pure)(*xs, **kw), where, hint)


def _linen_module(name: str, module: Any, shapes: Any, where: str):
    if shapes is None:
        raise ArgumentError(
            f"{where}: a flax.linen module is initialized from example inputs, so "
            "input_shape is required, e.g. flax_module(name, module, "
            "input_shape=(64,))."
        )
    hint = "Give it inputs of the shape it was initialized with (input_shape)."
    try:
        variables = jax.eval_shape(module.init, jax.random.key(0), *_zeros(shapes))
    except _shape_errors() as e:
        raise _mismatch(where, shapes, e, "Fix input_shape or the module.") from e
    others = sorted(k for k in variables if k != "params")
    if others:
        raise ArgumentError(
            f"{where}: the module has variable collections {others} besides "
            "'params'; only 'params' are trained here. Use a module without them, "
            "or a flax.nnx module (whose other state is kept fixed)."
        )

    def init(key: Any) -> Any:
        dtype = jnp.result_type(float)
        return module.init(key, *[jnp.zeros(s, dtype) for s in shapes])["params"]

    weights = param(name, init)
    return _applier(
        lambda *xs, **kw: module.apply({"params": weights}, *xs, **kw), where, hint
    )


def eqx_module(
    name: str, module: Any, input_shape: Shape | Sequence[Shape] | None = None
) -> Callable[..., Any]:
    """Register an Equinox module's weights as the param ``name``; return the
    module with this run's weights.

    The module's floating-point arrays (``eqx.is_inexact_array``) are the
    weights, starting at their current values; everything else is kept as it is.

    Args:
        name: the param name; ``jsvi.get_params(...)[name]`` holds the weights as a
            dict keyed by their paths in the module (e.g. ``".layers[0].weight"``).
        module: an ``equinox.Module``.
        input_shape: optional shape of one input (or list of shapes) to check that
            the module accepts it. Equinox layers take one example: ``jax.vmap``
            the returned function over a batch.

    Returns:
        ``apply(*inputs, **kwargs)``: the module called with this run's weights.

    Raises:
        ArgumentError: equinox is not installed, or ``module`` is not an Equinox
            module.
        ShapeError: the module cannot be applied to inputs of ``input_shape`` (or,
            when called, to the inputs given).

    Example:
        >>> import jax, jax.numpy as jnp, equinox as eqx
        >>> mlp = eqx.nn.MLP(3, 2, width_size=8, depth=1, key=jax.random.key(0))
        >>> apply = eqx_module("mlp", mlp, input_shape=(3,))
        >>> jax.vmap(apply)(jnp.ones((5, 3))).shape
        (5, 2)
    """
    where = f"eqx_module {name!r}"
    if not isinstance(name, str):
        raise ArgumentError(f"eqx_module: name must be a str, got {name!r}.")
    eqx = _require("equinox", "equinox", where)
    shapes = _input_shapes(input_shape, where)
    if not isinstance(module, eqx.Module):
        raise ArgumentError(
            f"{where}: expected an equinox.Module, got {type(module).__name__}. For a "
            "Flax module use jsvi.nn.flax_module."
        )
    arrays, static = eqx.partition(module, eqx.is_inexact_array)
    # A module is callable, and a callable init value means "key -> value" to
    # jsvi.param: register the weights as a plain dict keyed by their paths.
    paths, treedef = jax.tree_util.tree_flatten_with_path(arrays)
    keys = [jax.tree_util.keystr(path) for path, _ in paths]
    init = {k: leaf for k, (_, leaf) in zip(keys, paths)}

    def build(weights: dict) -> Any:
        tree = jax.tree_util.tree_unflatten(treedef, [weights[k] for k in keys])
        return eqx.combine(tree, static)

    hint = "Equinox layers take one example at a time: jax.vmap over a batch."
    if shapes is not None:
        try:
            jax.eval_shape(lambda p, *xs: build(p)(*xs), init, *_zeros(shapes))
        except _shape_errors() as e:
            raise _mismatch(where, shapes, e, hint + " Or fix input_shape.") from e
    weights = param(name, init)
    return _applier(lambda *xs, **kw: build(weights)(*xs, **kw), where, hint)
