"""The chunked linear scan (linear_recurrence(method='chunked')) against the sequential form: values
and gradients within 1e-5 in float32, lengths that are not multiples of the chunk, C = 1 and C = T,
masks, reversed sequences, extreme finite gates; the method/chunk_size arguments and the deprecated
parallel= flag."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from zoo.layers import scan

T, B, H = 13, 3, 4


def _inputs(seed, log_space, steps=T):
    rng = np.random.default_rng(seed)
    log_a = -np.logaddexp(0.0, 2.0 * rng.standard_normal((steps, B, H)))  # log sigmoid: minGRU's decays
    b = rng.standard_normal((steps, B, H))
    if log_space:
        b = -np.logaddexp(0.0, -b)  # log b, b in (0, 1)
    h0 = rng.standard_normal((B, H))
    w = rng.standard_normal((steps, B, H))  # weights of the loss: every state matters
    wl = rng.standard_normal((B, H))  # and the last carry
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return f32(log_a), f32(b), f32(h0), f32(w), f32(wl)


def _value_and_grads(method, chunk, log_space, mask):
    """jit(value_and_grad) of a loss over every state and the last carry, wrt log_a, b, h0."""

    def loss(log_a, b, h0, w, wl):
        h_last, hs = zoo.linear_recurrence(log_a, b, h0, mask, log_space=log_space, method=method,
                                           chunk_size=chunk)
        return jnp.sum(hs * w) + jnp.sum(h_last * wl), (h_last, hs)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-5)


MASK = zoo.lengths_to_mask(jnp.array([13, 0, 6]), T)  # a full row, an empty one, a short one


@pytest.mark.parametrize("log_space", [False, True], ids=["lin", "log"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_chunked_equals_sequential(log_space, masked):
    """Values, last carry and gradients (log_a, b, h0) match the sequential scan within 1e-5 at
    C = 1, C = 4 and 5 (T = 13 is a multiple of neither), C = T and C > T."""
    mask = MASK if masked else None
    args = _inputs(1 if masked else 0, log_space)
    (ref_loss, ref_out), ref_grads = _value_and_grads("sequential", None, log_space, mask)(*args)
    for chunk in (1, 4, 5, T, 64):
        (loss, out), grads = _value_and_grads("chunked", chunk, log_space, mask)(*args)
        _close((loss, out, grads), (ref_loss, ref_out, ref_grads))
    if masked:
        assert np.all(np.asarray(out[1][:, 1]) == 0) and np.all(np.asarray(out[1][6:, 2]) == 0)
        np.testing.assert_array_equal(out[0][1], args[2][1])  # an empty row keeps h0


def test_chunked_reversed_sequences(helpers):
    """A reversed RNN (each sequence flipped within its length) gives the sequential cell's outputs,
    carries and gradients with the chunked scan."""
    x = helpers.randn((3, 11, 4), 7)
    lengths = jnp.array([11, 4, 0])
    seq = zoo.RNN(zoo.MinGRUCell(features=5, method="sequential"), reverse=True, keep_order=True, return_carry=True)
    chunked = zoo.RNN(zoo.MinGRUCell(features=5, method="chunked", chunk_size=3), reverse=True, keep_order=True,
                      return_carry=True)
    params = helpers.init_params(seq, x, seed=8)

    def run(rnn):
        def loss(p, x):
            carry, y = rnn.apply(p, x, seq_lengths=lengths)
            return jnp.sum(y * jnp.arange(y.size).reshape(y.shape) / y.size) + jnp.sum(carry), (carry, y)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)

    _close(run(chunked), run(seq))


# the scan as one compiled program per (method, chunk): eager, every primitive compiles on its own
_jit_recurrence = jax.jit(zoo.linear_recurrence, static_argnames=("method", "chunk_size"))


def test_chunked_is_stable_for_extreme_finite_gates():
    """Decays from exp(-1e30) (a = 0) to 1 and inputs up to 1e30: finite, and equal to the sequential scan."""
    rng = np.random.default_rng(3)
    log_a = rng.choice([-1e30, -1e4, -100.0, -1.0, -1e-6, 0.0], size=(40, B, H))
    b = rng.choice([-1e30, -1.0, 0.0, 1e-30, 1.0, 1e30], size=(40, B, H))
    h0 = rng.choice([-1e30, 0.0, 1.0], size=(B, H))
    args = [jnp.asarray(v, jnp.float32) for v in (log_a, b, h0)]
    ref = _jit_recurrence(*args, method="sequential")[1]
    for chunk in (1, 7, 40):
        hs = _jit_recurrence(*args, method="chunked", chunk_size=chunk)[1]
        assert np.all(np.isfinite(np.asarray(hs)))
        np.testing.assert_allclose(np.asarray(hs), np.asarray(ref), rtol=1e-5, atol=1e-5)
    grads = jax.jit(jax.grad(lambda la, b, h0: jnp.sum(
        zoo.linear_recurrence(la, b, h0, method="chunked", chunk_size=7)[1] * 1e-30), argnums=(0, 1, 2)))(*args)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_cells_default_and_chunked_match_sequential(helpers):
    """minGRU/minLSTM layers with the default method and with the chunked scan equal the sequential layer."""
    x = helpers.randn((2, 9, 3), 11)
    for cls in (zoo.MinGRUCell, zoo.MinLSTMCell):
        ref = zoo.RNN(cls(features=4, method="sequential"))
        params = helpers.init_params(ref, x, seed=12)
        want = helpers.apply(ref, params, x)  # jitted applies: eager ones compile op by op
        for cell in (cls(features=4), cls(features=4, method="chunked", chunk_size=2)):
            np.testing.assert_allclose(helpers.apply(zoo.RNN(cell), params, x), want, rtol=1e-5, atol=1e-5)


def test_method_arguments():
    """Bad methods and chunk sizes are ValueErrors naming the value; parallel= warns and maps to a method."""
    args = _inputs(0, False)[:3]
    for bad in ("fast", "Chunked"):
        with pytest.raises(ValueError, match=f"method='{bad}'.*'sequential', 'associative', 'chunked'"):
            zoo.linear_recurrence(*args, method=bad)
        with pytest.raises(ValueError, match=f"MinGRUCell: method='{bad}'"):
            zoo.MinGRUCell(features=4, method=bad)
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match=f"chunk_size={bad!r}; expected an integer >= 1"):
            zoo.linear_recurrence(*args, method="chunked", chunk_size=bad)
    for parallel, method in ((True, "associative"), (False, "sequential")):
        with pytest.warns(DeprecationWarning, match=f"parallel={parallel} is now method='{method}'"):
            cell = zoo.MinLSTMCell(features=4, parallel=parallel)
        assert cell.method == method and cell.parallel is None
        with pytest.warns(DeprecationWarning, match="linear_recurrence: parallel="):
            old = zoo.linear_recurrence(*args, parallel=parallel)
        np.testing.assert_array_equal(old[1], zoo.linear_recurrence(*args, method=method)[1])
    with pytest.raises(TypeError, match="got parallel= and method="):
        zoo.MinGRUCell(features=4, parallel=True, method="chunked")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.MinGRUCell(features=4, method="chunked", chunk_size=8).clone()  # no warning without parallel=


def test_platform_defaults_are_known_methods():
    assert scan.CPU_METHOD in scan.METHODS and scan.ACCELERATOR_METHOD in scan.METHODS
    assert scan.CPU_CHUNK_SIZE >= 1 and scan.ACCELERATOR_CHUNK_SIZE >= 1
