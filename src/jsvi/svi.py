"""The functional SVI loop: ``SVI``, ``SVIState``, ``svi_init``, ``svi_update``,
``evaluate_loss``, ``get_params`` and ``svi_run``.

Everything that changes per step lives in ``SVIState`` (a pytree). ``SVI`` holds
only static configuration (model, guide, optimizer, estimator) and is hashable, so
it can be a static argument of ``jax.jit``.

May import: ``jsvi.infer``, ``jsvi.core``; external: ``optax``, ``tqdm`` (optional).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jsvi import errors
from jsvi._typing import Array, ModelFn, Params, PRNGKey, PyTree, is_concrete
from jsvi.core.handlers import as_key
from jsvi.errors import ArgumentError
from jsvi.infer._checks import check_traces, value_checks
from jsvi.infer._common import (
    ELBO,
    check_signatures,
    constrain,
    get_traces,
    unconstrain,
    unconstrained_param_fn,
)

__all__ = [
    "SVI",
    "SVIState",
    "evaluate_loss",
    "get_params",
    "svi_init",
    "svi_update",
]


class ParamConstraints(NamedTuple):
    """Static (leafless) record of each parameter's constraint, kept in the state.

    ``jit`` flattens the state and compares its tree structure on every call. A
    namedtuple with no fields is a node JAX's pytree code handles natively, with
    its type as the node data; so each distinct set of constraints gets its own
    subclass (see ``param_constraints``) that carries them as ``items``, and the
    per-call comparison is one identity check rather than Python callbacks.
    """

    items = ()  # class attribute, set per subclass; not a field

    def as_dict(self) -> dict[str, Any]:
        return dict(self.items)

    def __repr__(self) -> str:
        return f"ParamConstraints({dict(self.items)!r})"


_CONSTRAINT_TYPES: dict[tuple[tuple[str, Any], ...], type[ParamConstraints]] = {}


def param_constraints(items: tuple[tuple[str, Any], ...]) -> ParamConstraints:
    """The ``ParamConstraints`` for ``items``; equal items give the same type, so
    states from separate ``svi_init`` calls share one tree structure."""
    cls = _CONSTRAINT_TYPES.get(items)
    if cls is None:
        cls = type("ParamConstraints", (ParamConstraints,), {"__slots__": (), "items": items})
        cls = _CONSTRAINT_TYPES.setdefault(items, cls)
    return cls()


class SVIState(NamedTuple):
    """Everything that changes from one SVI step to the next.

    Attributes:
        params: dict name -> unconstrained parameter value (array or pytree).
        opt_state: the optax optimizer state.
        elbo_state: the estimator's state (baseline averages, ...); ``()`` if none.
        rng_key: the run's key. It stays the same from step to step: step ``t``
            draws with ``fold_in(rng_key, t)``, so a state's next draw depends on
            its key and ``step`` alone (and a resumed run continues the stream).
        step: number of steps taken (int32 scalar).
        num_rejected: number of steps rejected as non-finite (int32 scalar).
        param_constraints: each parameter's constraint (static, no array leaves).
    """

    params: Params
    opt_state: PyTree
    elbo_state: PyTree
    rng_key: PRNGKey
    step: Array
    num_rejected: Array
    param_constraints: ParamConstraints = ParamConstraints()


@dataclasses.dataclass(frozen=True)
class SVI:
    """Static SVI configuration: model, guide, optimizer and ELBO estimator.

    Immutable and hashable, so ``jax.jit(jsvi.svi_update, static_argnums=0)`` works.

    Args:
        model: ``model(*args, **kwargs)`` using ``jsvi.sample``/``param``/``plate``.
        guide: the variational family, with the model's signature.
        optimizer: any ``optax.GradientTransformation``.
        loss: an estimator such as ``jsvi.Trace_ELBO()``.
        validate: run ``jsvi.validate``'s checks in ``svi_init`` (default). They
            run once, while ``svi_init`` is traced, and add nothing to
            ``svi_update``; ``False`` skips them (and the init-value checks).

    Example:
        >>> import optax, jsvi
        >>> svi = jsvi.SVI(lambda: None, lambda: None, optax.adam(1e-2), jsvi.Trace_ELBO())
        >>> hash(svi) == hash(svi)
        True
    """

    model: ModelFn
    guide: ModelFn
    optimizer: optax.GradientTransformation
    loss: ELBO
    validate: bool = True

    def __post_init__(self) -> None:
        for name in ("model", "guide"):
            if not callable(getattr(self, name)):
                raise ArgumentError(
                    f"SVI: {name} must be callable, got {type(getattr(self, name)).__name__}."
                )
        if not (hasattr(self.optimizer, "init") and hasattr(self.optimizer, "update")):
            raise ArgumentError(
                f"SVI: optimizer must be an optax.GradientTransformation, got "
                f"{type(self.optimizer).__name__}. Pass e.g. optax.adam(1e-3)."
            )
        if not isinstance(self.validate, bool):
            raise ArgumentError(
                f"SVI: validate must be True or False, got {self.validate!r}."
            )
        if not isinstance(self.loss, ELBO):
            raise ArgumentError(
                f"SVI: loss must be an ELBO estimator such as jsvi.Trace_ELBO(), got "
                f"{type(self.loss).__name__}."
            )
        check_signatures(self.model, self.guide)
        try:
            fields = tuple(getattr(self, f.name) for f in dataclasses.fields(self))
            object.__setattr__(self, "_hash", hash(fields))
            # svi_update's compiled calls by argument pattern, and its last plain
            # step (not fields: they take no part in equality or hashing).
            object.__setattr__(self, "_fast_updates", {})
            object.__setattr__(self, "_hot", (-1, None, None, None, None))
        except TypeError as e:
            raise ArgumentError(
                f"SVI: model, guide, optimizer and loss must be hashable ({e}). Wrap "
                "array-holding objects in a function."
            ) from None

    # jit hashes and compares its static arguments on every call: hash once, and
    # try identity before comparing fields.
    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not type(self):
            return NotImplemented
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
        )

    def init(self, rng_key: Any, *args: Any, **kwargs: Any) -> SVIState:
        """Same as ``jsvi.svi_init(self, ...)``."""
        return svi_init(self, rng_key, *args, **kwargs)

    def update(self, state: SVIState, *args: Any, **kwargs: Any) -> tuple[SVIState, Array]:
        """Same as ``jsvi.svi_update(self, ...)``."""
        return svi_update(self, state, *args, **kwargs)

    def evaluate_loss(self, state: SVIState, *args: Any, **kwargs: Any) -> Array:
        """Same as ``jsvi.evaluate_loss(self, ...)``."""
        return evaluate_loss(self, state, *args, **kwargs)

    def get_params(self, state: SVIState) -> dict[str, PyTree]:
        """Same as ``jsvi.get_params(self, state)``."""
        return get_params(self, state)

    def run(self, rng_key: Any, num_steps: int, *args: Any, **kwargs: Any):
        """Same as ``jsvi.svi_run(self, ...)``."""
        from jsvi.loop import svi_run  # noqa: PLC0415 (loop imports this module)

        return svi_run(self, rng_key, num_steps, *args, **kwargs)


# ---------------------------------------------------------------------------
# splitting model arguments into traced arrays and static Python values


def _is_dynamic(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float, complex)) or not (
        is_concrete(x)
    )


_ARRAY_TYPES = frozenset({type(jnp.zeros(())), np.ndarray})


class _Static(NamedTuple):
    treedef: Any
    static_leaves: tuple[tuple[int, Hashable], ...]
    num_leaves: int
    # the static leaves' types, so that equal values of different types (1, 1.0,
    # True) key different compiled programs
    static_types: tuple[type, ...] = ()


# Python scalars that stay static (plate sizes, batch sizes, flags, names).
_STATIC_SCALARS = frozenset({int, bool, str})


@functools.lru_cache(maxsize=256)
def _arrays_and_scalars(num_args: int, static: tuple[tuple[int, type, Any], ...]) -> _Static:
    treedef = jax.tree.structure((tuple(range(num_args)), {}))
    return _Static(
        treedef, tuple((i, v) for i, _, v in static), num_args, tuple(t for _, t, _ in static)
    )


def _all_arrays(num_args: int) -> _Static:
    return _arrays_and_scalars(num_args, ())


def _split_args(args: tuple, kwargs: Mapping[str, Any], where: str) -> tuple[list, _Static]:
    if not kwargs:
        types = [type(a) for a in args]
        if all(t in _ARRAY_TYPES for t in types):
            return list(args), _all_arrays(len(args))  # the common case, fast
        if all(t in _ARRAY_TYPES or t in _STATIC_SCALARS for t in types):
            # Arrays and static scalars (e.g. a minibatch size): no tree flattening.
            # The type is part of the cache key, so 1 and True stay distinct.
            static = tuple(
                (i, t, a) for i, (t, a) in enumerate(zip(types, args)) if t in _STATIC_SCALARS
            )
            dynamic = [a for t, a in zip(types, args) if t in _ARRAY_TYPES]
            return dynamic, _arrays_and_scalars(len(args), static)
    leaves, treedef = jax.tree.flatten((tuple(args), dict(kwargs)))
    dynamic, static = [], []
    for i, leaf in enumerate(leaves):
        if _is_dynamic(leaf):
            dynamic.append(leaf)
            continue
        try:
            hash(leaf)
        except TypeError:
            raise ArgumentError(
                f"{where}: argument leaf #{i} of type {type(leaf).__name__} is neither "
                "an array nor hashable. Pass data as arrays (jnp.asarray(...)); other "
                "arguments must be hashable Python values."
            ) from None
        static.append((i, leaf))
    types = tuple(type(leaf) for _, leaf in static)
    return dynamic, _Static(treedef, tuple(static), len(leaves), types)


def _merge_args(static: _Static, dynamic: list) -> tuple[tuple, dict]:
    leaves: list[Any] = [None] * static.num_leaves
    for i, leaf in static.static_leaves:
        leaves[i] = leaf
    it = iter(dynamic)
    for i in range(static.num_leaves):
        if leaves[i] is None:
            leaves[i] = next(it)
    args, kwargs = jax.tree.unflatten(static.treedef, leaves)
    return args, kwargs


# ---------------------------------------------------------------------------
# init


def _no_params(msg: Any) -> None:
    del msg
    return None


def _init_impl(svi: SVI, static: _Static, rng_key: PRNGKey, dynamic: list):
    args, kwargs = _merge_args(static, dynamic)
    rng_key, init_key, state_key = jax.random.split(rng_key, 3)
    model_tr, guide_tr = get_traces(
        init_key, svi.model, svi.guide, _no_params, args, kwargs, draw=False
    )
    params, constraints = {}, []
    for tr in (guide_tr, model_tr):
        for name, site in tr.param_sites().items():
            if name not in params:
                params[name] = unconstrain(site.value, site.constraint)
                constraints.append((name, site.constraint))
    checks = []
    if svi.validate:
        check_traces(model_tr, guide_tr)
        svi.loss.check_traces(model_tr, guide_tr)
        checks = value_checks(model_tr, guide_tr)
    # jit returns dicts with sorted keys: number them to keep the order of checks.
    flags = {
        f"{i:06d}|{cls.__name__}|{message}": ok
        for i, (cls, message, ok) in enumerate(checks)
    }
    param_fn = unconstrained_param_fn(params)
    elbo_state = svi.loss.init_state(state_key, param_fn, svi.model, svi.guide, args, kwargs)
    if svi.validate:
        # Trace (never compile) one loss evaluation, so that the estimator's own
        # structural errors surface here rather than in the first svi_update.
        jax.eval_shape(
            lambda: svi.loss.loss_and_aux(
                rng_key, param_fn, svi.model, svi.guide, elbo_state, args, kwargs
            )
        )
    state = SVIState(
        params=params,
        opt_state=svi.optimizer.init(params),
        elbo_state=elbo_state,
        rng_key=rng_key,
        step=jnp.zeros((), jnp.int32),
        num_rejected=jnp.zeros((), jnp.int32),
        param_constraints=param_constraints(tuple(constraints)),
    )
    return state, flags


_init_jit = jax.jit(_init_impl, static_argnums=(0, 1))


def _raise_failed(flags: Mapping[str, Array], where: str) -> None:
    """Raise the first failed value check (keys: ``index|error class|message``)."""
    if not all(is_concrete(v) for v in flags.values()):
        return  # traced (e.g. svi_init under vmap): value checks need concrete values
    for key in sorted(flags):
        if not bool(flags[key]):
            _, cls_name, message = key.split("|", 2)
            raise getattr(errors, cls_name)(f"{where}: {message}.")


def svi_init(svi: SVI, rng_key: Any, *args: Any, **kwargs: Any) -> SVIState:
    """Initialise parameters, optimizer and estimator state in one compiled call.

    Guide and model run once, traced inside ``jax.jit``: every ``param`` site's
    init value is mapped to unconstrained space, structural checks (model/guide
    sites, plate shapes) raise before anything is compiled, and value checks (init
    inside its constraint, validated distribution arguments and observations) are
    evaluated in the same program and raised afterwards.

    Nothing is drawn at random during init: latent sites take a fixed point of their
    support (0 for reals, 1 for positives, the midpoint of an interval, the uniform
    simplex, ...) and subsampling plates their first indices, so the init program
    compiles no samplers. Distribution arguments are therefore validated at that
    point; a param whose init value is computed from a latent draw is initialised at
    it too. Callable param inits still receive their own random keys.

    Args:
        svi: the configuration.
        rng_key: a ``jax.random.key``, raw ``PRNGKey`` or int.
        *args, **kwargs: model and guide arguments. Arrays (and Python floats) are
            traced; other Python values (ints, strings, ...) are static.

    Returns:
        The initial ``SVIState``.

    Raises:
        SupportError: a param init or an observation is outside its support.
        NonFiniteError: a log-density is not finite at the init point.
        ModelGuideMismatchError, ShapeError, SiteError: malformed model or guide.
    """
    key = as_key(rng_key, "svi_init")
    dynamic, static = _split_args(args, kwargs, "svi_init")
    state, flags = _init_jit(svi, static, key, dynamic)
    _raise_failed(flags, "svi_init")
    if is_concrete(state.num_rejected):
        # Known zero: the shared zero lets svi_update take its plain step at once.
        state = state._replace(num_rejected=_zero_rejected())
    return state


# ---------------------------------------------------------------------------
# update


class _NoneRejected:
    """Marks ``num_rejected`` as known to be zero inside ``_plain_update``'s program."""

    __slots__ = ()


_NONE_REJECTED = _NoneRejected()


@functools.cache
def _zero_rejected() -> Array:
    """The shared int32 zero that ``svi_update`` returns as ``num_rejected``.

    JAX arrays are immutable, so a state holding this very object is known to have
    had no rejections without reading the value back from the device. (Made
    concrete even when first asked for under a trace.)
    """
    with jax.ensure_compile_time_eval():
        return jnp.zeros((), jnp.int32)


def _step_key(state: SVIState) -> PRNGKey:
    """The key one step draws with: ``fold_in(rng_key, step)``.

    After a rejected (non-finite) step the state is unchanged but for
    ``num_rejected``, which is mixed into the key so the retry draws anew. XOR into
    the key data is the identity while nothing was rejected, so it costs no
    extra hashing on the normal path; distinct keys give independent streams.
    """
    step_key = jax.random.fold_in(state.rng_key, state.step)
    if state.num_rejected is _NONE_REJECTED:
        return step_key  # known to be zero (``svi_update``'s plain step)
    data = jax.random.key_data(step_key)
    last = jnp.arange(data.shape[-1], dtype=data.dtype) == data.shape[-1] - 1
    data = data ^ (last * state.num_rejected.astype(data.dtype))
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(step_key))


def _objective(svi: SVI, state: SVIState, args: tuple, kwargs: dict):
    step_key = _step_key(state)

    def objective(params_u: Params):
        return svi.loss.loss_and_aux(
            step_key,
            unconstrained_param_fn(params_u),
            svi.model,
            svi.guide,
            state.elbo_state,
            args,
            kwargs,
        )

    return objective


def _step(
    svi: SVI, static: _Static, state: SVIState, dynamic: list, skip_nonfinite: bool
) -> tuple[SVIState, tuple[Array, Array]]:
    args, kwargs = _merge_args(static, dynamic)
    objective = _objective(svi, state, args, kwargs)
    (_, (loss, elbo_state)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params
    )
    updates, opt_state = svi.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state._replace(
        params=params,
        opt_state=opt_state,
        elbo_state=elbo_state,
        step=state.step + 1,
    )
    if not skip_nonfinite:
        return new_state, (loss, jnp.zeros((), bool))
    finite = jnp.isfinite(loss)
    for g in jax.tree.leaves(grads):
        finite = finite & jnp.all(jnp.isfinite(g))
    rejected_state = state._replace(num_rejected=state.num_rejected + 1)
    chosen = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new_state, rejected_state)
    return chosen, (loss, ~finite)


_update_jit = jax.jit(_step, static_argnums=(0, 1, 4))


def svi_update(svi: SVI, state: SVIState, *args: Any, **kwargs: Any) -> tuple[SVIState, Array]:
    """Take one optimizer step on the estimator's surrogate loss.

    Pure and compiled: the same state and inputs give the same result, and it works
    under ``jax.jit``, ``jax.lax.scan`` and ``jax.vmap`` over states.

    Returns:
        ``(new_state, loss)``, with ``loss`` the -ELBO estimate at ``state``'s
        parameters (before the step).

    Example:
        >>> import jax, optax, jsvi, jsvi.distributions as dist
        >>> def model():
        ...     jsvi.sample("x", dist.Normal(jsvi.param("mu", 0.0), 1.0), obs=2.0)
        >>> svi = jsvi.SVI(model, lambda: None, optax.sgd(0.5), jsvi.Trace_ELBO())
        >>> state = jsvi.svi_init(svi, jax.random.key(0))
        >>> state, loss = jsvi.svi_update(svi, state)
        >>> float(jsvi.get_params(svi, state)["mu"])
        1.0
    """
    # The hot path: the same key as the last plain step, no rejections, the same
    # number of arguments, all arrays. At a small model's step every line of
    # Python before the dispatch shows in the step time (run between compiled
    # calls, it runs with cold caches), so this is written out here, in one frame.
    hot = svi._hot  # (number of args, rng_key, program, key as passed, shared zero)
    if state.rng_key is hot[1] and state.num_rejected is hot[4] and len(args) == hot[0]:
        for a in args:
            if type(a) not in _ARRAY_TYPES:
                break
        else:
            if not kwargs:
                params, opt_state, elbo_state, step, loss = hot[2](
                    state.params, state.opt_state, state.elbo_state, hot[3], state.step, args
                )
                fields = (params, opt_state, elbo_state, hot[1], step, hot[4])
                return _new_tuple(SVIState, (*fields, state.param_constraints)), loss
    return _update_general(svi, state, args, kwargs)


_new_tuple = tuple.__new__  # SVIState's own __new__ costs 0.2 us more per call


def _update_general(
    svi: SVI, state: SVIState, args: tuple, kwargs: dict
) -> tuple[SVIState, Array]:
    if not kwargs:
        # By position, only arrays (the common case) or arrays and static scalars
        # (a batch size, a flag): in as few steps as can be, with no tree flattening
        # and no lru_cache hashing.
        fast = svi._fast_updates
        for a in args:
            if type(a) not in _ARRAY_TYPES:
                break
        else:
            call = fast.get(len(args))
            if call is None:
                call = fast[len(args)] = _plain_update(svi, _all_arrays(len(args)))
            return call(state, args)
        dynamic, scalars = (), ()
        for i, a in enumerate(args):
            t = type(a)
            if t in _ARRAY_TYPES:
                dynamic += (a,)
            elif t in _STATIC_SCALARS:
                scalars += ((i, t, a),)  # the type is in the key: 1 and True differ
            else:
                break
        else:
            key = (len(args), scalars)
            call = fast.get(key)
            if call is None:
                call = fast[key] = _plain_update(svi, _arrays_and_scalars(*key))
            return call(state, dynamic)
    dynamic, static = _split_args(args, kwargs, "svi_update")
    return _plain_update(svi, static)(state, tuple(dynamic))


@functools.lru_cache(maxsize=128)
def _plain_update(svi: SVI, static: _Static) -> Callable[[SVIState, tuple], Any]:
    """``svi_update``'s compiled step for one configuration and argument structure.

    A jitted closure per ``(svi, static)`` takes only array arguments, so each call
    goes through jit's fast dispatch path without hashing static arguments. Each
    buffer in or out of a compiled call costs about a microsecond on CPU, a large
    share of a small model's step; so the fields a plain step never changes
    (``rng_key``, ``num_rejected``, ``param_constraints``) are passed around it rather than
    through it, and no rejection flag is returned.

    ``num_rejected`` is not even an input while it is zero, the usual case: a state
    from ``svi_init`` (or from a run with no rejections) holds the shared zero
    ``_zero_rejected()``, which proves it by identity, and its step draws with
    ``fold_in(rng_key, step)`` alone. Any other ``num_rejected`` (a traced or
    batched one, or one that counts rejections) goes to a second program, compiled
    only when first needed, that mixes it into the key. A concrete typed key goes
    in as its raw data and is wrapped again inside the program.
    """

    def update_counted(params, opt_state, elbo_state, rng_key, step, num_rejected, dynamic):
        state = SVIState(params, opt_state, elbo_state, rng_key, step, num_rejected)
        new, (loss, _) = _step(svi, static, state, dynamic, False)
        return new.params, new.opt_state, new.elbo_state, new.step, loss

    plain_by_impl: dict[Any, Any] = {}

    def plain_for(impl: Any) -> Any:
        """The plain step taking the key as raw data of ``impl`` (None: as it is)."""

        def update(params, opt_state, elbo_state, rng_key, step, dynamic):
            if impl is not None:
                rng_key = jax.random.wrap_key_data(rng_key, impl=impl)
            return update_counted(
                params, opt_state, elbo_state, rng_key, step, _NONE_REJECTED, dynamic
            )

        plain_by_impl[impl] = jax.jit(update)
        return plain_by_impl[impl]

    # A typed key costs more to pass into a compiled call than its raw data (about
    # 2% of a small step). The state's key stays the same from step to step, so the
    # key as passed (raw data, read out with one dispatch) and the step program for
    # it are looked up once and kept while the same key object comes back.
    hot: list[tuple[Any, Any, Any]] = [(None, None, None)]  # key, its program, key as passed

    def plain_and_key(rng_key: Any) -> tuple[Any, Any]:
        cached = hot[0]  # one read: another thread may replace it meanwhile
        if rng_key is cached[0]:
            return cached[1], cached[2]
        if not (isinstance(rng_key, jax.Array) and is_concrete(rng_key)):
            # a traced key (never kept: it would outlive its trace), or numpy data
            return plain_by_impl.get(None) or plain_for(None), rng_key
        impl, passed = None, rng_key  # raw key data is passed as it is
        if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
            impl, passed = jax.random.key_impl(rng_key), jax.random.key_data(rng_key)
        plain = plain_by_impl.get(impl) or plain_for(impl)
        hot[0] = (rng_key, plain, passed)
        return plain, passed

    counted = jax.jit(update_counted)
    zero = _zero_rejected()
    array_type = type(zero)  # a concrete array, never a tracer
    new_state = _new_tuple
    # Arrays only, by position: ``svi_update`` may then take this step on its own
    # hot path (``SVI._hot``), while the key stays the same.
    num_arrays = static.num_leaves if static == _all_arrays(static.num_leaves) else -1

    def keep_hot(key: Any, plain: Any, passed: Any) -> None:
        if num_arrays >= 0:
            object.__setattr__(svi, "_hot", (num_arrays, key, plain, passed, zero))

    def call(state: SVIState, dynamic: tuple) -> tuple[SVIState, Array]:
        # Reached off ``svi_update``'s own hot path: a new key, other arguments, or
        # a ``num_rejected`` not known to be zero.
        num_rejected = state.num_rejected
        if num_rejected is not zero and (
            type(num_rejected) is not array_type
            or num_rejected.shape != ()
            or int(num_rejected) != 0
        ):
            params, opt_state, elbo_state, step, loss = counted(
                state.params,
                state.opt_state,
                state.elbo_state,
                state.rng_key,
                state.step,
                num_rejected,
                dynamic,
            )
            fields = (params, opt_state, elbo_state, state.rng_key, step)
            return SVIState(*fields, num_rejected, state.param_constraints), loss
        # A concrete zero (e.g. a restored checkpoint) becomes the shared zero.
        plain, key = plain_and_key(state.rng_key)
        if hot[0][0] is state.rng_key:  # a concrete key, never a tracer
            keep_hot(state.rng_key, plain, key)
        params, opt_state, elbo_state, step, loss = plain(
            state.params, state.opt_state, state.elbo_state, key, state.step, dynamic
        )
        fields = (params, opt_state, elbo_state, state.rng_key, step, zero, state.param_constraints)
        return new_state(SVIState, fields), loss

    def lower(state: SVIState, dynamic: tuple):
        # For inspecting the compiled program (benchmarks compare its HLO).
        plain, key = plain_and_key(state.rng_key)
        return plain.lower(
            state.params, state.opt_state, state.elbo_state, key, state.step, dynamic
        )

    call.lower = lower  # type: ignore[attr-defined]
    return call


def _evaluate_impl(svi: SVI, static: _Static, state: SVIState, dynamic: list) -> Array:
    args, kwargs = _merge_args(static, dynamic)
    _, (loss, _) = _objective(svi, state, args, kwargs)(state.params)
    return loss


_evaluate_jit = jax.jit(_evaluate_impl, static_argnums=(0, 1))


def evaluate_loss(svi: SVI, state: SVIState, *args: Any, **kwargs: Any) -> Array:
    """The -ELBO estimate at ``state`` without taking a step.

    It uses the same draw the next ``svi_update`` would, so it equals the loss that
    ``svi_update(svi, state, ...)`` returns.
    """
    dynamic, static = _split_args(args, kwargs, "evaluate_loss")
    return _evaluate_jit(svi, static, state, dynamic)


@jax.jit
def _constrain_all(params: Params, constraints: ParamConstraints) -> dict[str, PyTree]:
    cs = constraints.as_dict()
    return {name: constrain(value, cs[name]) for name, value in params.items()}


def get_params(svi: SVI, state: SVIState) -> dict[str, PyTree]:
    """Constrained parameter values by name (pure; the state is unchanged)."""
    del svi
    return _constrain_all(state.params, state.param_constraints)
