"""Pyro (PyTorch, CPU) versions of the suite's models (not a benchmark itself).

Each builder mirrors a jsvi model in ``core_step.py``, ``minibatch.py``,
``particles.py``, ``partIII_baseline.py``, ``enum_mixture.py`` or
``examples/vae_digits.py``: same priors, likelihood, guide family, initial values
and Adam settings. Data come in as NumPy arrays. A builder clears Pyro's global
parameter store, so only one Pyro contender is live at a time; each returns a
``step()`` that takes one ``SVI.step`` and returns its loss as a float.

Importing this module needs ``torch`` and ``pyro-ppl``; call ``configure`` first.
Install torch with the CPU pin before Pyro (see ``suite.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as pdist
import torch
from pyro.distributions import constraints
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO
from pyro.optim import Adam

Step = Callable[[], float]


def configure(threads: int) -> dict[str, Any]:
    """Thread count and validation for every Pyro run; returns what was set.

    Validation is turned off: it checks distribution arguments on every call,
    which NumPyro and jsvi do not do per step either.
    """
    torch.set_num_threads(threads)
    pyro.enable_validation(False)
    return {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "pyro_validation": False,
    }


def _t(x: Any) -> torch.Tensor:
    return torch.tensor(np.array(x, dtype=np.float32))


def _svi(model, guide, loss, lr: float, betas=(0.9, 0.999)) -> SVI:
    pyro.clear_param_store()
    return SVI(model, guide, Adam({"lr": lr, "betas": betas}), loss=loss)


def _stepper(svi: SVI, *args, **kwargs) -> Step:
    def step() -> float:
        return svi.step(*args, **kwargs)

    return step


def param(name: str) -> np.ndarray:
    """A constrained parameter's current value."""
    return pyro.param(name).detach().numpy().copy()


# --- coin ---------------------------------------------------------------------------


def coin_model(data):
    f = pyro.sample("f", pdist.Beta(10.0, 10.0))
    with pyro.plate("data", data.shape[0]):
        pyro.sample("obs", pdist.Bernoulli(f), obs=data)


def coin_guide(data):
    del data
    a = pyro.param("a", torch.tensor(15.0), constraint=constraints.positive)
    b = pyro.param("b", torch.tensor(15.0), constraint=constraints.positive)
    pyro.sample("f", pdist.Beta(a, b))


def coin(data: np.ndarray, lr: float) -> tuple[Step, Callable[[], tuple[float, float]]]:
    """Beta-Bernoulli coin; also returns ``posterior() -> (a, b)``."""
    x = _t(data)
    svi = _svi(coin_model, coin_guide, Trace_ELBO(), lr)
    return _stepper(svi, x), lambda: (float(param("a")), float(param("b")))


def coin_loop(
    data: np.ndarray, lr: float, steps: int
) -> Callable[[], tuple[float, float]]:
    """A fresh coin fit of ``steps`` Python-loop steps; returns the final ``(a, b)``."""
    x = _t(data)

    def run() -> tuple[float, float]:
        svi = _svi(coin_model, coin_guide, Trace_ELBO(), lr)
        for _ in range(steps):
            svi.step(x)
        return float(param("a")), float(param("b"))

    return run


# --- logistic regression (full batch, minibatch, vectorized particles) ----------------


def _logits(X: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # w is (D,) or, under vectorized particles, (P, 1, D); the data plate is dim -1.
    wx = torch.einsum("nd,...d->...n", X, w)
    if wx.dim() > 2:
        wx = wx.squeeze(-2)
    return wx + b


def logreg_model(X, y, batch=None):
    D = X.shape[1]
    w = pyro.sample("w", pdist.Normal(torch.zeros(D), 1.0).to_event(1))
    b = pyro.sample("b", pdist.Normal(0.0, 1.0))
    with pyro.plate("data", X.shape[0], subsample_size=batch) as idx:
        Xs, ys = (X, y) if batch is None else (X[idx], y[idx])
        pyro.sample("y", pdist.Bernoulli(logits=_logits(Xs, w, b)), obs=ys)


def logreg_guide(X, y, batch=None):
    del y, batch
    D = X.shape[1]
    w_loc = pyro.param("w_loc", torch.zeros(D))
    w_scale = pyro.param(
        "w_scale", 0.1 * torch.ones(D), constraint=constraints.positive
    )
    b_loc = pyro.param("b_loc", torch.tensor(0.0))
    b_scale = pyro.param("b_scale", torch.tensor(0.1), constraint=constraints.positive)
    pyro.sample("w", pdist.Normal(w_loc, w_scale).to_event(1))
    pyro.sample("b", pdist.Normal(b_loc, b_scale))


def logreg(
    X: np.ndarray,
    y: np.ndarray,
    lr: float,
    *,
    batch: int | None = None,
    particles: int = 1,
) -> Step:
    """Mean-field logistic regression; ``batch`` subsamples the data plate,
    ``particles > 1`` vectorizes the ELBO over particles."""
    loss = Trace_ELBO(
        num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1
    )
    svi = _svi(logreg_model, logreg_guide, loss, lr)
    return _stepper(svi, _t(X), _t(y), batch=batch)


# --- Part III: score-function coin with and without a baseline -------------------------


class NonreparameterizedBeta(pdist.Beta):
    has_rsample = False


def _part3_model(data):
    f = pyro.sample("latent_fairness", pdist.Beta(10.0, 10.0))
    with pyro.plate("data", data.shape[0]):
        pyro.sample("obs", pdist.Bernoulli(f), obs=data)


def _part3_guide(use_baseline: bool):
    infer = (
        {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": 0.90}}
        if use_baseline
        else {}
    )

    def guide(data):
        del data
        a = pyro.param("alpha_q", torch.tensor(15.0), constraint=constraints.positive)
        b = pyro.param("beta_q", torch.tensor(15.0), constraint=constraints.positive)
        pyro.sample("latent_fairness", NonreparameterizedBeta(a, b), infer=infer)

    return guide


def part3(
    data: np.ndarray, use_baseline: bool, lr: float, betas: Sequence[float]
) -> Step:
    svi = _svi(
        _part3_model, _part3_guide(use_baseline), TraceGraph_ELBO(), lr, tuple(betas)
    )
    return _stepper(svi, _t(data))


def part3_steps_to_converge(
    data: np.ndarray,
    use_baseline: bool,
    *,
    seeds: int,
    max_steps: int,
    lr: float,
    betas: Sequence[float],
    target: Sequence[float],
    tolerance: float,
) -> dict[str, Any]:
    """Steps until both guide parameters are within ``tolerance`` of ``target``,
    one Python loop per seed (stopping there), as in ``partIII_baseline.py``."""
    x = _t(data)
    steps, t0 = [], time.perf_counter()
    for seed in range(seeds):
        pyro.set_rng_seed(seed)
        svi = _svi(
            _part3_model,
            _part3_guide(use_baseline),
            TraceGraph_ELBO(),
            lr,
            tuple(betas),
        )
        taken = max_steps
        for t in range(1, max_steps + 1):
            svi.step(x)
            a = pyro.param("alpha_q").item()
            b = pyro.param("beta_q").item()
            if abs(a - target[0]) < tolerance and abs(b - target[1]) < tolerance:
                taken = t
                break
        steps.append(taken)
    return {
        "steps": steps,
        "converged": int(sum(s < max_steps for s in steps)),
        "median_steps": float(np.median(steps)),
        "seconds_all_seeds": time.perf_counter() - t0,
    }


# --- enumerated Gaussian mixture ---------------------------------------------------------


def mixture(data: np.ndarray, K: int, init_locs: Sequence[float], lr: float) -> Step:
    """``TraceEnum_ELBO`` with the assignments enumerated and an empty guide."""
    x = _t(data)

    def model(data):
        weights = pyro.param(
            "weights", torch.ones(K) / K, constraint=constraints.simplex
        )
        locs = pyro.param("locs", torch.tensor(list(init_locs)))
        scales = pyro.param("scales", torch.ones(K), constraint=constraints.positive)
        with pyro.plate("data", data.shape[0]):
            z = pyro.sample(
                "z", pdist.Categorical(weights), infer={"enumerate": "parallel"}
            )
            pyro.sample("x", pdist.Normal(locs[z], scales[z]), obs=data)

    def guide(data):
        del data

    svi = _svi(model, guide, TraceEnum_ELBO(max_plate_nesting=1), lr)
    return _stepper(svi, x)


# --- VAE on digits ----------------------------------------------------------------------


def _mlp(
    weights: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor
) -> torch.Tensor:
    for w, b in weights[:-1]:
        x = torch.relu(x @ w + b)
    w, b = weights[-1]
    return x @ w + b


def _net(
    name: str, init: list[dict[str, Any]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    # Lazy initial values: a tensor passed directly would be trained in place.
    return [
        (
            pyro.param(f"{name}.{i}.w", lambda layer=layer: _t(layer["w"])),
            pyro.param(f"{name}.{i}.b", lambda layer=layer: _t(layer["b"])),
        )
        for i, layer in enumerate(init)
    ]


def vae(
    init: dict[str, Any],
    z_dim: int,
    max_intensity: int,
    lr: float,
    num_steps: int,
    batch_size: int,
    x_train: np.ndarray,
    x_test: np.ndarray,
    num_draws: int,
) -> tuple[dict[str, Any], Step]:
    """Train the digits VAE from the same initial weights as jsvi's, then return
    its held-out ELBO per image (mean over ``num_draws`` single-particle
    estimates, with standard error) and a per-step timer from a fresh start."""
    xtr, xte = _t(x_train), _t(x_test)

    def model(x, batch_size=None):
        decoder = _net("decoder", init["decoder"])
        with pyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            z = pyro.sample("z", pdist.Normal(torch.zeros(z_dim), 1.0).to_event(1))
            pixels = pdist.Binomial(max_intensity, logits=_mlp(decoder, z)).to_event(1)
            pyro.sample("x", pixels, obs=x[idx])

    def guide(x, batch_size=None):
        encoder = _net("encoder", init["encoder"])
        with pyro.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            out = _mlp(encoder, x[idx] / max_intensity)
            scale = torch.nn.functional.softplus(out[..., z_dim:]) + 1e-4
            pyro.sample("z", pdist.Normal(out[..., :z_dim], scale).to_event(1))

    svi = _svi(model, guide, Trace_ELBO(), lr)
    pyro.set_rng_seed(1)
    t0 = time.perf_counter()
    losses = [svi.step(xtr, batch_size=batch_size) for _ in range(num_steps)]
    train_s = time.perf_counter() - t0
    elbo = Trace_ELBO()
    totals = (
        np.array([-elbo.loss(model, guide, xte) for _ in range(num_draws)])
        / xte.shape[0]
    )
    row = {
        "heldout_elbo": float(totals.mean()),
        "heldout_elbo_se": float(totals.std(ddof=1) / math.sqrt(num_draws)),
        "train_s": train_s,
        "train_steps": num_steps,
        "final_train_loss_per_image": float(np.mean(losses[-100:])) / xtr.shape[0],
    }
    svi = _svi(model, guide, Trace_ELBO(), lr)
    return row, _stepper(svi, xtr, batch_size=batch_size)
