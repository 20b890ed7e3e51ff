"""The README's commands, the CI script and the public API's doctests."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import pkgutil

import pytest

import jsvi

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in (ROOT / "README.md").read_text()


def _modules():
    yield jsvi
    for info in pkgutil.walk_packages(jsvi.__path__, "jsvi."):
        yield importlib.import_module(info.name)


@pytest.mark.parametrize("module", list(_modules()), ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_public_surface_matches_api():
    for name in ["sample", "param", "plate", "deterministic", "factor", "config_enumerate",
                 "SVI", "SVIState", "svi_init", "svi_update", "svi_run", "evaluate_loss",
                 "get_params", "per_param", "Trace_ELBO", "TraceGraph_ELBO", "TraceEnum_ELBO",
                 "TraceMeanField_ELBO", "kl_divergence", "save_state", "load_state", "diagnostics",
                 "Predictive", "autoguide", "nn", "to_arviz", "enable_validation", "handlers",
                 "constraints", "distributions", "errors", "format_shapes", "validate"]:
        assert name in jsvi.__all__ and hasattr(jsvi, name), name
    for name in ["seed", "trace", "replay", "substitute", "condition", "block", "scale", "mask"]:
        assert hasattr(jsvi.handlers, name), name
    state_fields = jsvi.SVIState._fields
    for f in ["params", "opt_state", "elbo_state", "rng_key", "step", "num_rejected"]:
        assert f in state_fields


def test_no_import_cycles_between_modules():
    """Dependencies flow one way (the layers contract in pyproject.toml checks
    which way); no two modules reach each other, package re-exports aside."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("jsvi")
    packages = {m for m in graph.modules if graph.find_children(m)}
    cycles = []
    for module in sorted(graph.modules - packages):
        for imported in graph.find_modules_directly_imported_by(module) - packages:
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(chain)
    assert not cycles, cycles


def test_modules_stay_short():
    """Modules stay near 600 lines: a longer one is split by concern."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "src" / "jsvi").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 720
    }
    assert not long, long
