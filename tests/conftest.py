"""Test configuration: several CPU devices, so sharding tests run on any machine.

The flag must be set before JAX initialises its backends.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=4").strip()
# Quick compiles (zoo_server.QUICK_XLA_FLAGS says why); a flag already in XLA_FLAGS overrides its default.
from zoo_server import GC_THRESHOLDS, QUICK_XLA_FLAGS  # imports neither jax nor zoo

for _flag in QUICK_XLA_FLAGS.split():
    if _flag.split("=")[0] not in os.environ["XLA_FLAGS"]:
        os.environ["XLA_FLAGS"] += " " + _flag


# Tracing allocates many short-lived objects, and a worker's heap grows with every compiled program it
# keeps; the default thresholds ran thousands of collections over it. Measured on test_transformer,
# test_rnn and test_lowering in one process: 12.5 s of 194 s in the collector (5,426 collections) by
# default, 5.1 s of 181 s with these (41); a test's memory is unchanged, garbage waits longer.
import gc  # noqa: E402

gc.set_threshold(*GC_THRESHOLDS)


# ---------------------------------------------------------------------------
# Shared helpers for the recurrent-layer tests (imported after the flags above).

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo

# The processes the tests start (`zoo` commands, benchmark workers, notebook kernels) share one
# persistent XLA compilation cache per test run: most of them compile the same nano models. They
# inherit it through the environment, set here after JAX was imported, so this process itself keeps
# its in-memory cache only (writing every small compilation to disk made in-process tests ~20%
# slower). The directory is named after pytest's main process (an xdist worker's parent), which
# removes it at exit.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _main = os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"zoo-tests-xla-cache-{_main}")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if "PYTEST_XDIST_WORKER" not in os.environ:
        atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

# name -> (cell class, fixed attributes). Every recurrent-cell configuration
# with its own code path: the three fused cells, the GRU without the fused
# kernel, and minGRU/minLSTM in both spaces with the associative (par) and
# sequential (seq) scans, and the chunked scan (chunk: 3 steps, so the test
# lengths are not multiples of it) once in each space.
CELL_SPECS = {
    "simple": (zoo.SimpleRNNCell, {}),
    "lstm": (zoo.LSTMCell, {}),
    "gru": (zoo.GRUCell, {"reset_after": True}),
    "gru_reset_before": (zoo.GRUCell, {"reset_after": False}),
}
for _cls, _base in ((zoo.MinGRUCell, "mingru"), (zoo.MinLSTMCell, "minlstm")):
    for _log in (True, False):
        for _par in (True, False):
            CELL_SPECS[f"{_base}_{'log' if _log else 'lin'}_{'par' if _par else 'seq'}"] = (
                _cls,
                {"log_space": _log, "method": "associative" if _par else "sequential"},
            )
CELL_SPECS["mingru_log_chunk"] = (zoo.MinGRUCell, {"log_space": True, "method": "chunked", "chunk_size": 3})
CELL_SPECS["minlstm_lin_chunk"] = (zoo.MinLSTMCell, {"log_space": False, "method": "chunked", "chunk_size": 3})

ALL_CELLS = list(CELL_SPECS)


def make_cell_by_name(name, features=5, **overrides):
    cls, attrs = CELL_SPECS[name]
    return cls(features=features, **{**attrs, **overrides})


# Random values come from NumPy: JAX's eager random ops (and flax's
# orthogonal / truncated-normal initialisers) compile once per shape, which
# would dominate the run time of a suite of small tests.


def randn(shape, seed=0, scale=1.0, dtype=jnp.float32):
    """Standard-normal array (times ``scale``) from a seeded NumPy generator."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), dtype)


def init_params(module, *args, seed=0, **kwargs):
    """Random variables for ``module.init(key, *args, **kwargs)`` without running the initialisers.

    Kernels (fan_in, fan_out) get std 1/sqrt(fan_in), vectors std 0.5, so
    every parameter (biases included) affects the outputs.
    """
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    rng = np.random.default_rng(seed)

    def fill(s):
        std = 1.0 / np.sqrt(s.shape[0]) if len(s.shape) == 2 else 0.5
        return jnp.asarray(std * rng.standard_normal(s.shape), s.dtype)

    return jax.tree.map(fill, shapes)


def random_carry_for(cell, batch_shape, seed=0, scale=0.5):
    """A random (non-zero, mixed-sign) carry with the cell's structure."""
    zeros = cell.initialize_carry(None, tuple(batch_shape) + (1,))
    leaves, treedef = jax.tree.flatten(zeros)
    return jax.tree.unflatten(
        treedef, [randn(z.shape, seed + i, scale, z.dtype) for i, z in enumerate(leaves)]
    )


@functools.partial(jax.jit, static_argnums=0)
def _cell_step(cell, variables, carry, x_t):
    return cell.apply(variables, carry, x_t)


def loop_rnn_reference(cell, params, x, carry):
    """Run ``cell`` by hand, one ``cell.apply`` per step, over batch-major ``x``.

    ``params`` are the variables of a ``zoo.RNN(cell)``; returns
    ``(final_carry, ys)`` with ys (batch, seq, features).
    """
    variables = {"params": params["params"]["cell"]}
    ys = []
    for t in range(x.shape[1]):
        carry, y = _cell_step(cell, variables, carry, x[:, t])
        ys.append(y)
    return carry, jnp.stack(ys, axis=1)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _jitted_apply(module, variables, args, static_kwargs, kwargs):
    return module.apply(variables, *args, **dict(static_kwargs), **kwargs)


def jit_apply(module, variables, *args, **kwargs):
    """``module.apply(variables, *args, **kwargs)`` under one ``jax.jit`` cached across tests.

    XLA compilation dominates the run time of small tests, and an eager
    ``apply`` compiles its loops anew on every call; this compiles once per
    (module, shapes, flags). Python scalars and None in ``kwargs`` are static.
    """
    static = tuple(
        sorted((k, v) for k, v in kwargs.items() if v is None or isinstance(v, (bool, int, float, str)))
    )
    dynamic = {k: v for k, v in kwargs.items() if k not in dict(static)}
    return _jitted_apply(module, variables, args, static, dynamic)


@pytest.fixture(params=ALL_CELLS)
def cell_name(request):
    """Every cell configuration (override with ``pytest.mark.parametrize('cell_name', ...)``)."""
    return request.param


@pytest.fixture
def helpers():
    """The helpers above, for tests: ``helpers.make_cell(name, features=5, **overrides)``,
    ``helpers.randn(shape, seed)``, ``helpers.init_params(module, *args, seed=0)``,
    ``helpers.random_carry(cell, batch_shape, seed)``, ``helpers.loop_reference(cell, params, x, carry)``,
    ``helpers.apply(module, variables, *args, **kwargs)`` (a cached jit of ``module.apply``).
    """
    return types.SimpleNamespace(
        make_cell=make_cell_by_name,
        randn=randn,
        init_params=init_params,
        random_carry=random_carry_for,
        loop_reference=loop_rnn_reference,
        apply=jit_apply,
    )
