"""Normalizing-flow autoguides: ``AutoIAFNormal`` and ``AutoBNAFNormal``, and the
two flows they are built on, written as ``jsvi.transforms.Transform`` subclasses:
``InverseAutoregressiveTransform`` (an affine autoregressive map driven by a
masked network, MADE) and ``BlockNeuralAutoregressiveTransform``.

Both guides draw a standard Normal vector ``eps`` of size ``D`` (the flattened
unconstrained latents, as in ``AutoContinuous``), push it through the flows and a
final elementwise affine map, ``u = loc + scale * flow(eps)``, and split ``u``
into the model's sites (mapped onto each support). The flows are not inverted:
each site is a point mass at its value whose log-density carries the exact
``log q``: the first site holds ``log N(eps) - log|det d u / d eps|``, and every
site its own ``-log|det J|`` of the unconstraining bijection. ``Trace_ELBO``'s
pathwise gradient is exact; the guides do not support sticking the landing
(nor DReG), which needs ``log q`` as a function of the value: their sites carry
``infer={"log_q_from_draw": True}``, and ``RenyiELBO(doubly_reparameterized=True)``
refuses them.

The flows start close to the identity (the IAF's last layer is zero), so the guide
starts as ``AutoNormal`` does: ``N(loc, init_scale^2)`` around ``init_loc_fn``'s
point.

May import (within jsvi): ``jsvi.autoguide.continuous``, ``jsvi.autoguide._base``,
``jsvi.autoguide._prototype``, ``jsvi.core``, ``jsvi.distributions``,
``jsvi.transforms``, ``jsvi.constraints``, ``jsvi._typing``, ``jsvi.errors``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jsvi import constraints
from jsvi._typing import Array, ArrayLike, ModelFn, Params, PRNGKey
from jsvi.autoguide._base import LazyInit, check_scale
from jsvi.autoguide._prototype import Prototype
from jsvi.autoguide.continuous import AutoContinuous
from jsvi.autoguide.initialization import InitStrategy, init_to_median
from jsvi.core.primitives import param, prng_key, sample
from jsvi.distributions import Delta
from jsvi.errors import ArgumentError, MissingRNGKeyError
from jsvi.transforms import Transform

__all__ = [
    "AutoBNAFNormal",
    "AutoIAFNormal",
    "BlockNeuralAutoregressiveTransform",
    "InverseAutoregressiveTransform",
]


# ---------------------------------------------------------------------------
# IAF


def _made_masks(dim: int, hidden_dims: Sequence[int]) -> list[np.ndarray]:
    """Masks of a MADE network ``dim -> hidden_dims -> 2 * dim``.

    Input ``i`` has degree ``i + 1``; hidden units get degrees ``1 .. dim - 1`` in
    turn; a unit sees the units of degree at most its own, and output ``i`` (of
    each of the two heads) only those of degree at most ``i``, so output ``i``
    depends on inputs ``< i`` alone.
    """
    degrees = [np.arange(1, dim + 1)]
    for h in hidden_dims:
        degrees.append(np.arange(h) % max(dim - 1, 1) + 1)
    masks = [(d_out[:, None] >= d_in[None, :]) for d_in, d_out in zip(degrees, degrees[1:])]
    out = np.concatenate([degrees[0], degrees[0]])
    masks.append(out[:, None] > degrees[-1][None, :])
    if dim == 1:
        masks = [np.zeros_like(m) for m in masks]
    return [m.astype(np.float32) for m in masks]


def _init_made(key: PRNGKey, dim: int, hidden_dims: Sequence[int]) -> list[dict]:
    """Weights of a MADE network; the last layer is zero (an identity IAF)."""
    sizes = [dim, *hidden_dims, 2 * dim]
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, (n_in, n_out) in zip(keys, zip(sizes, sizes[1:])):
        w = jax.random.normal(k, (n_out, n_in)) / math.sqrt(n_in)
        layers.append({"w": w, "b": jnp.zeros(n_out)})
    layers[-1] = jax.tree.map(jnp.zeros_like, layers[-1])
    return layers


@jax.jit
def _made_forward(params: list[dict], masks: list[Any], x: Array) -> tuple[Array, Array]:
    """The MADE's ``(shift, bounded log_scale)`` for inputs ``x`` (..., D).

    Jitted on its own so that eager calls (``guide.quantiles``) compile one
    program rather than each operation.
    """
    h = x
    last = len(params) - 1
    for i, (layer, mask) in enumerate(zip(params, masks)):
        h = h @ (layer["w"] * mask).T + layer["b"]
        if i < last:
            h = jax.nn.elu(h)
    shift, raw = jnp.split(h, 2, axis=-1)
    return shift, 3.0 * jnp.tanh(raw / 3.0)


class InverseAutoregressiveTransform(Transform):
    r"""``y_i = mu_i(x_{<i}) + exp(s_i(x_{<i})) x_i`` with ``(mu, s)`` from a MADE.

    ``s`` is bounded smoothly, :math:`s = 3\tanh(\tilde s / 3)`, so a step cannot
    blow the scale up. ``log|det| = sum_i s_i``. Forward only (no ``inv``).

    Args:
        params: the MADE weights, a list of ``{"w": (out, in), "b": (out,)}``.
        masks: ``_made_masks(dim, hidden_dims)``.

    References:
        Kingma et al. (2016), Improved variational inference with inverse
        autoregressive flow. Germain et al. (2015), MADE.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> weights = _init_made(jax.random.key(0), 3, (8,))  # last layer zero
        >>> t = InverseAutoregressiveTransform(weights, _made_masks(3, (8,)))
        >>> t(jnp.ones(3)).shape, float(t.log_abs_det_jacobian(jnp.ones(3), None))
        ((3,), 0.0)
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    _pytree_data_fields = ("params", "masks")

    def __init__(self, params: list[dict], masks: list[Any]):
        self.params, self.masks = params, masks

    def _shift_log_scale(self, x: Array) -> tuple[Array, Array]:
        return _made_forward(self.params, self.masks, x)

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x)
        shift, log_scale = self._shift_log_scale(x)
        return shift + jnp.exp(log_scale) * x

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        shift, log_scale = self._shift_log_scale(x)
        return shift + jnp.exp(log_scale) * x, jnp.sum(log_scale, -1)

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        return jnp.sum(self._shift_log_scale(jnp.asarray(x))[1], -1)


# ---------------------------------------------------------------------------
# BNAF


def _bnaf_masks(dim: int, factors: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(diagonal-block mask, strictly-lower-block mask) per layer of a BNAF
    ``dim -> dim * factors[0] -> ... -> dim``."""
    sizes = [1, *factors, 1]
    masks = []
    for a_in, a_out in zip(sizes, sizes[1:]):
        block = np.kron(np.eye(dim), np.ones((a_out, a_in)))
        lower = np.kron(np.tril(np.ones((dim, dim)), -1), np.ones((a_out, a_in)))
        masks.append((block.astype(np.float32), lower.astype(np.float32)))
    return masks


def _init_bnaf(key: PRNGKey, dim: int, factors: Sequence[int]) -> list[dict]:
    sizes = [1, *factors, 1]
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for k, (a_in, a_out) in zip(keys, zip(sizes, sizes[1:])):
        n_in, n_out = dim * a_in, dim * a_out
        w = jax.random.normal(k, (n_out, n_in)) / math.sqrt(n_in)
        layers.append(
            {"w": w, "b": jnp.zeros(n_out), "log_g": jnp.log(jnp.ones(n_out))}
        )
    return layers


@functools.partial(jax.jit, static_argnums=3)
def _bnaf_forward(
    params: list[dict], masks: list[Any], x: Array, d: int
) -> tuple[Array, Array]:
    """BNAF output and ``log|det J|`` for inputs ``x`` (..., D); jitted on its own
    (see ``_made_forward``)."""
    h = x
    log_jac = None  # (..., D, a_out, a_in): log d h / d x within blocks
    last = len(params) - 1
    for i, (layer, (diag, lower)) in enumerate(zip(params, masks)):
        raw = layer["w"]
        w = jnp.exp(raw) * diag + raw * lower
        norm = jnp.sqrt(jnp.sum(w**2, axis=-1, keepdims=True))
        w = jnp.exp(layer["log_g"])[:, None] * w / norm
        log_w = layer["log_g"][:, None] + raw - jnp.log(norm)
        a_out, a_in = w.shape[0] // d, w.shape[1] // d
        log_diag = jnp.moveaxis(  # the diagonal blocks, (D, a_out, a_in)
            jnp.diagonal(log_w.reshape(d, a_out, d, a_in), axis1=0, axis2=2), -1, 0
        )
        h = h @ w.T + layer["b"]
        step = log_diag if log_jac is None else jax.nn.logsumexp(
            log_diag[..., :, :, None] + log_jac[..., None, :, :], axis=-2
        )
        if i < last:
            t = jnp.tanh(h)
            # log(1 - tanh^2 h), stably
            log_dt = 2.0 * (math.log(2.0) - h - jax.nn.softplus(-2.0 * h))
            step = step + log_dt.reshape(h.shape[:-1] + (d, a_out, 1))
            h = t
        log_jac = step
    return h, jnp.sum(log_jac[..., 0, 0], axis=-1)


class BlockNeuralAutoregressiveTransform(Transform):
    r"""A block neural autoregressive flow: masked, weight-normalized layers
    ``D -> D a_1 -> ... -> D`` with ``tanh`` in between.

    Each weight matrix is block lower-triangular with ``D x D`` blocks; the
    diagonal blocks are positive (``exp`` of the raw weights), so every output
    ``y_i`` is a strictly increasing function of ``x_i`` given ``x_{<i}``. Rows
    are weight-normalized, :math:`W_r = g_r W_r / \lVert W_r \rVert`. The
    Jacobian is lower-triangular; its diagonal is accumulated in log space
    through the diagonal blocks (a log-sum-exp matrix product per layer).
    Forward only (no ``inv``).

    References:
        De Cao, Aziz, Titov (2019), Block neural autoregressive flow.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> weights = _init_bnaf(jax.random.key(0), 3, (4,))
        >>> t = BlockNeuralAutoregressiveTransform(weights, _bnaf_masks(3, (4,)), 3)
        >>> t(jnp.ones(3)).shape
        (3,)
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    _pytree_data_fields = ("params", "masks")

    def __init__(self, params: list[dict], masks: list[Any], dim: int):
        self.params, self.masks, self.dim = params, masks, dim

    def forward_and_log_det(self, x: Array) -> tuple[Array, Array]:
        return _bnaf_forward(self.params, self.masks, x, self.dim)

    def __call__(self, x: ArrayLike) -> Array:
        return self.forward_and_log_det(jnp.asarray(x))[0]

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike) -> Array:
        del y
        return self.forward_and_log_det(jnp.asarray(x))[1]


# ---------------------------------------------------------------------------
# the guides


class _AutoFlow(AutoContinuous):
    """Shared body of the flow guides; subclasses build the flows."""

    _flow_param = "flows"

    def __init__(
        self,
        model: ModelFn,
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_median,
        init_scale: float = 0.1,
    ):
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)
        self.init_scale = check_scale(init_scale, type(self).__name__)

    def _family_names(self) -> tuple[str, ...]:
        return ("scale", self._flow_param)

    def _init_flows(self, key: PRNGKey, dim: int) -> list:
        raise NotImplementedError

    def _unravel(self, dim: int) -> Any:
        """Flat weight vector -> the flows' weight pytree (shapes only are used)."""
        shapes = jax.eval_shape(lambda: self._init_flows(jax.random.key(0), dim))
        zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        return ravel_pytree(zeros)[1]

    def _flows(self, weights: list, dim: int) -> list[Transform]:
        raise NotImplementedError

    def _push(self, fam: Mapping[str, Any], loc: Array, eps: Array) -> tuple[Array, Array]:
        """``u`` and ``log q(u)`` for base draws ``eps`` (..., D)."""
        dim = eps.shape[-1]
        log_q = jnp.sum(-0.5 * eps**2 - 0.5 * math.log(2 * math.pi), -1)
        x = eps
        weights = self._unravel(dim)(fam[self._flow_param])
        for i, flow in enumerate(self._flows(weights, dim)):
            if i:
                x = x[..., ::-1]  # reverse the order between flows
            x, log_det = flow.forward_and_log_det(x)
            log_q = log_q - log_det
        scale = fam["scale"]
        return loc + scale * x, log_q - jnp.sum(jnp.log(scale))

    def _body(self, proto: Prototype, args: tuple, kwargs: Mapping[str, Any]) -> dict:
        if not proto.latents:
            return {}
        init = LazyInit(self, proto, args, kwargs)
        dim = self.latent_dim(proto)

        def init_loc(key: Any) -> Array:
            values = init.values(key)
            parts = [s.transform.inv(values[s.name]).reshape(-1) for s in proto.latents]
            return jnp.concatenate(parts)

        loc = param(f"{self.prefix}_loc", init_loc)
        fam = {
            "scale": param(
                f"{self.prefix}_scale",
                jnp.full((dim,), self.init_scale),
                constraint=constraints.positive,
            ),
            self._flow_param: param(
                f"{self.prefix}_{self._flow_param}",
                lambda key: ravel_pytree(self._init_flows(key, dim))[0],
            ),
        }
        key = prng_key()
        if key is None:
            raise MissingRNGKeyError(
                f"{type(self).__name__}: no random key to draw with. Run the guide "
                "under jsvi.handlers.seed (SVI and Predictive do this for you)."
            )
        eps = jax.random.normal(key, (dim,), loc.dtype)
        u, log_q = self._push(fam, loc, eps)
        values = {}
        for i, (latent, start, stop) in enumerate(self._blocks(proto)):
            block = u[start:stop].reshape(latent.u_shape)
            value = latent.transform(block)
            log_det = jnp.sum(latent.transform.log_abs_det_jacobian(block, value))
            log_density = (log_q if i == 0 else 0.0) - log_det
            point = Delta(value, log_density=log_density, event_dim=len(latent.shape))
            values[latent.name] = sample(
                latent.name, point, infer={"log_q_from_draw": True}
            )
        return values

    # -- after training -----------------------------------------------------------
    def _read(self, params: Params) -> tuple[dict[str, Any], Array]:
        fam = {
            "scale": jnp.asarray(params[f"{self.prefix}_scale"]),
            self._flow_param: params[f"{self.prefix}_{self._flow_param}"],
        }
        return fam, jnp.asarray(params[f"{self.prefix}_loc"])

    def get_posterior(self, params: Params) -> Any:  # type: ignore[override]
        raise ArgumentError(
            f"{type(self).__name__}.get_posterior: a flow guide has no closed-form "
            "distribution. Use sample_posterior(rng_key, params, ...) for draws."
        )

    def _median(self, params: Params, proto: Prototype) -> dict[str, Array]:
        """The image of the base's median (``eps = 0``): the flow's central point."""
        fam, loc = self._read(params)
        u, _ = self._push(fam, loc, jnp.zeros_like(loc))
        return self._unpack(u, proto)

    def _quantiles(self, params: Params, qs: Array, proto: Prototype) -> dict:
        """Empirical quantiles per coordinate of ``u`` from 4,096 fixed draws."""
        fam, loc = self._read(params)
        eps = jax.random.normal(jax.random.key(0), (4096, loc.shape[0]), loc.dtype)
        u, _ = self._push(fam, loc, eps)
        return self._unpack(jnp.quantile(u, qs, axis=0), proto)


class AutoIAFNormal(_AutoFlow):
    """A Normal pushed through ``num_flows`` inverse autoregressive flows, over the
    whole unconstrained latent vector.

    Parameters: ``"<prefix>_loc"``, ``"<prefix>_scale"`` (``(D,)``) and
    ``"<prefix>_flows"`` (the MADE weights of every flow, raveled into one vector:
    one array instead of dozens of leaves makes each optimizer step cheaper).

    Args:
        model: the model function.
        num_flows: number of IAF steps (the order of the coordinates is reversed
            between steps).
        hidden_dims: the MADE's hidden layer sizes; default ``[max(2 D, 8)] * 2``.
        prefix, init_loc_fn, init_scale: as for ``AutoNormal``.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     jsvi.sample("z", dist.Normal(0.0, 1.0).expand((2,)).to_event(1))
        >>> guide = AutoIAFNormal(model, num_flows=2)
        >>> tr = handlers.trace(handlers.seed(guide, 0)).get_trace()  # or svi_init
        >>> params = {n: s.value for n, s in tr.param_sites().items()}
        >>> guide.sample_posterior(jax.random.key(1), params, sample_shape=(3,))["z"].shape
        (3, 2)
    """

    def __init__(
        self,
        model: ModelFn,
        num_flows: int = 3,
        hidden_dims: Sequence[int] | None = None,
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_median,
        init_scale: float = 0.1,
    ):
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, init_scale=init_scale)
        self.num_flows = _check_count(num_flows, "AutoIAFNormal", "num_flows")
        if hidden_dims is not None:
            hidden_dims = tuple(
                _check_count(h, "AutoIAFNormal", "hidden_dims entries") for h in hidden_dims
            )
        self.hidden_dims = hidden_dims

    def _hidden(self, dim: int) -> tuple[int, ...]:
        return self.hidden_dims if self.hidden_dims is not None else (max(2 * dim, 8),) * 2

    def _init_flows(self, key: PRNGKey, dim: int) -> list:
        keys = jax.random.split(key, self.num_flows)
        return [_init_made(k, dim, self._hidden(dim)) for k in keys]

    def _flows(self, weights: list, dim: int) -> list[Transform]:
        masks = _made_masks(dim, self._hidden(dim))
        return [InverseAutoregressiveTransform(w, masks) for w in weights]


class AutoBNAFNormal(_AutoFlow):
    """A Normal pushed through ``num_flows`` block neural autoregressive flows,
    over the whole unconstrained latent vector.

    Parameters: ``"<prefix>_loc"``, ``"<prefix>_scale"`` (``(D,)``) and
    ``"<prefix>_flows"`` (every flow's weights raveled into one vector).

    Args:
        model: the model function.
        num_flows: number of BNAF steps (coordinates reversed between steps).
        hidden_factors: hidden layer widths as multiples of ``D``.
        prefix, init_loc_fn, init_scale: as for ``AutoNormal``.

    Example:
        >>> import jax, jsvi, jsvi.distributions as dist
        >>> from jsvi import handlers
        >>> def model():
        ...     jsvi.sample("z", dist.Normal(0.0, 1.0).expand((2,)).to_event(1))
        >>> guide = AutoBNAFNormal(model, hidden_factors=(4,))
        >>> tr = handlers.trace(handlers.seed(guide, 0)).get_trace()  # or svi_init
        >>> params = {n: s.value for n, s in tr.param_sites().items()}
        >>> guide.median(params)["z"].shape, guide.quantiles(params, [0.5])["z"].shape
        ((2,), (1, 2))
    """

    def __init__(
        self,
        model: ModelFn,
        num_flows: int = 1,
        hidden_factors: Sequence[int] = (8, 8),
        *,
        prefix: str = "auto",
        init_loc_fn: InitStrategy = init_to_median,
        init_scale: float = 0.1,
    ):
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, init_scale=init_scale)
        self.num_flows = _check_count(num_flows, "AutoBNAFNormal", "num_flows")
        self.hidden_factors = tuple(
            _check_count(a, "AutoBNAFNormal", "hidden_factors entries")
            for a in hidden_factors
        )

    def _init_flows(self, key: PRNGKey, dim: int) -> list:
        keys = jax.random.split(key, self.num_flows)
        return [_init_bnaf(k, dim, self.hidden_factors) for k in keys]

    def _flows(self, weights: list, dim: int) -> list[Transform]:
        masks = _bnaf_masks(dim, self.hidden_factors)
        return [BlockNeuralAutoregressiveTransform(w, masks, dim) for w in weights]


def _check_count(n: Any, where: str, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ArgumentError(f"{where}: {what} must be ints >= 1, got {n!r}.")
    return n
