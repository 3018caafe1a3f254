"""minGRU / minLSTM: the associative scan (method='associative') against the sequential scan, long
sequences, negative initial states, non-finite padding, and the linear_recurrence kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo

CLASSES = {"mingru": zoo.MinGRUCell, "minlstm": zoo.MinLSTMCell}
CONFIGS = [(c, log) for c in CLASSES for log in (True, False)]
CONFIG_IDS = [f"{c}-{'log' if log else 'lin'}" for c, log in CONFIGS]

# ---------------------------------------------------------------------------
# helpers


def _rel_err(a, b):
    """Norm-wise relative error ||a - b|| / ||b|| in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _rnns(cls_name, log_space, H):
    """The same cell with the associative scan and with the sequential scan (same parameters)."""
    cls = CLASSES[cls_name]
    par = zoo.RNN(cls(features=H, log_space=log_space, method="associative"), return_carry=True)
    seq = zoo.RNN(cls(features=H, log_space=log_space, method="sequential"), return_carry=True)
    return par, seq


def _long_case(helpers, cls_name, log_space, B=3, T=512, F=4, H=16, seed=0):
    par, seq = _rnns(cls_name, log_space, H)
    x = helpers.randn((B, T, F), seed)
    params = helpers.init_params(par, x, seed=seed + 1)
    h0 = -2.0 * jnp.abs(helpers.randn((B, H), seed + 2)) - 0.5  # negative initial state (allowed)
    return par, seq, params, x, h0


def _np_linear_recurrence(a, b, h0):
    h, hs = np.asarray(h0, np.float64), []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        hs.append(h)
    return h, np.stack(hs)


# ---------------------------------------------------------------------------
# associative scan == sequential scan


def _np_reference(cls_name, log_space, params, x, h0, lengths):
    """Float64 sequential NumPy minGRU/minLSTM from the docstring formulas (state frozen past lengths)."""
    p = {k: np.asarray(v, np.float64) for k, v in params["params"]["cell"].items()}
    k = np.asarray(x, np.float64) @ p["input_kernel"] + p["bias"]  # (B, T, gates*H)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))
    H = h0.shape[-1]
    cand = k[..., -H:]
    if log_space:
        cand = np.where(cand >= 0, cand + 0.5, sig(np.minimum(cand, 0)))
    if cls_name == "mingru":
        z = sig(k[..., :H])
        a, b = 1.0 - z, z * cand
    else:
        f, i = sig(k[..., :H]), sig(k[..., H : 2 * H])
        a, b = f / (f + i), i / (f + i) * cand
    valid = (np.arange(x.shape[1])[None, :] < np.asarray(lengths)[:, None])[..., None]  # (B, T, 1)
    a, b = np.where(valid, a, 1.0), np.where(valid, b, 0.0)  # padding: identity steps
    h_ref, ys_ref = _np_linear_recurrence(np.swapaxes(a, 0, 1), np.swapaxes(b, 0, 1), h0)
    return h_ref, np.where(valid, np.swapaxes(ys_ref, 0, 1), 0.0)


@pytest.mark.parametrize("cls_name, log_space", CONFIGS, ids=CONFIG_IDS)
def test_parallel_equals_sequential_long(cls_name, log_space, helpers):
    """T=512, H=16, negative h0, with lengths: associative scan == sequential scan to rel. error 1e-5,
    and both stay within rel. error 1e-5 of a float64 NumPy run."""
    par, seq, params, x, h0 = _long_case(helpers, cls_name, log_space)
    lengths = jnp.array([512, 0, 301])
    c_p, y_p = helpers.apply(par, params, x, initial_carry=h0, seq_lengths=lengths)
    c_s, y_s = helpers.apply(seq, params, x, initial_carry=h0, seq_lengths=lengths)
    assert _rel_err(y_p, y_s) < 1e-5
    assert _rel_err(c_p, c_s) < 1e-5
    np.testing.assert_array_equal(c_p[1], h0[1])  # empty sequence keeps h0
    assert np.all(np.asarray(y_p[2, 301:]) == 0)
    # the negative initial state is really felt at the start (not clipped or dropped)
    assert float(jnp.min(y_p[:, 0])) < -0.2

    h_ref, ys_ref = _np_reference(cls_name, log_space, params, x, h0, lengths)
    for c, y in ((c_p, y_p), (c_s, y_s)):
        assert _rel_err(y, ys_ref) < 1e-5
        assert _rel_err(c, h_ref) < 1e-5


@pytest.mark.parametrize("cls_name, log_space", CONFIGS, ids=CONFIG_IDS)
def test_parallel_gradients_equal_sequential(cls_name, log_space, helpers):
    """T=100, negative h0, with lengths: gradients (params, x, h0) of both scans agree to rel. error 1e-4."""
    par, seq, params, x, h0 = _long_case(helpers, cls_name, log_space, B=2, T=100, seed=20)
    lengths = jnp.array([100, 77])
    w = helpers.randn((2, 100, 16), 23)

    def grads(rnn):
        def loss(params, x, h0):
            c, y = rnn.apply(params, x, initial_carry=h0, seq_lengths=lengths)
            return jnp.sum(y * w) + jnp.sum(c**2)

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, x, h0)

    g_par, g_seq = grads(par), grads(seq)
    for a, b in zip(jax.tree.leaves(g_par), jax.tree.leaves(g_seq)):
        assert np.all(np.isfinite(a))
        assert _rel_err(a, b) < 1e-4


# ---------------------------------------------------------------------------
# non-finite padding


@pytest.mark.parametrize(
    "cls_name, log_space, method",
    [("mingru", True, "associative"), ("mingru", False, "sequential"), ("minlstm", True, "sequential"),
     ("minlstm", False, "associative"), ("mingru", True, "chunked"), ("minlstm", False, "chunked")],
    ids=["mingru-log-par", "mingru-lin-seq", "minlstm-log-seq", "minlstm-lin-par", "mingru-log-chunk",
         "minlstm-lin-chunk"],
)
def test_nonfinite_padding_does_not_leak(cls_name, log_space, method, helpers):
    """NaN/inf inputs on padded steps change no output, no carry and no gradient (all stay finite)."""
    cls = CLASSES[cls_name]
    rnn = zoo.RNN(cls(features=5, log_space=log_space, method=method, chunk_size=4), return_carry=True)
    B, T = 4, 9
    x = helpers.randn((B, T, 3), 30)
    params = helpers.init_params(rnn, x, seed=31)
    h0 = helpers.randn((B, 5), 32, scale=0.5)
    lengths = jnp.array([9, 4, 0, 6])
    pad = np.arange(T)[None, :, None] >= np.asarray(lengths)[:, None, None]
    junk = np.where(np.arange(B * T * 3).reshape(B, T, 3) % 3 == 0, np.nan, np.inf)
    junk[1, 5:, 1] = -np.inf
    x_bad = jnp.where(pad, jnp.asarray(junk, jnp.float32), x)
    x_zero = jnp.where(pad, 0.0, x)

    def loss(params, x, h0):
        c, y = rnn.apply(params, x, initial_carry=h0, seq_lengths=lengths)
        return jnp.sum(y**2) + jnp.sum(c**2), (c, y)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
    (_, (c_bad, y_bad)), g_bad = step(params, x_bad, h0)
    (_, (c_ok, y_ok)), g_ok = step(params, x_zero, h0)
    np.testing.assert_array_equal(y_bad, y_ok)
    np.testing.assert_array_equal(c_bad, c_ok)
    gp_bad, gx_bad, gh_bad = g_bad
    gp_ok, gx_ok, gh_ok = g_ok
    for a, b in zip(jax.tree.leaves((gp_bad, gh_bad)), jax.tree.leaves((gp_ok, gh_ok))):
        assert np.all(np.isfinite(a)), "non-finite padding leaked into a gradient"
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    valid = ~pad[..., 0]
    np.testing.assert_allclose(np.asarray(gx_bad)[valid], np.asarray(gx_ok)[valid], rtol=1e-6, atol=1e-7)
    assert np.all(np.asarray(gx_bad)[~valid] == 0)


@pytest.mark.parametrize("cell_name", ["simple", "lstm", "gru", "gru_reset_before"])
def test_nonfinite_padding_does_not_leak_classic_cells(cell_name, helpers):
    """Classic cells too: NaN padding leaves outputs, carries and gradients finite and unchanged."""
    cell = helpers.make_cell(cell_name, features=5)
    rnn = zoo.RNN(cell, return_carry=True)
    B, T = 3, 6
    x = helpers.randn((B, T, 3), 40)
    params = helpers.init_params(rnn, x, seed=41)
    lengths = jnp.array([6, 2, 0])
    pad = np.arange(T)[None, :, None] >= np.asarray(lengths)[:, None, None]
    x_bad = jnp.where(pad, jnp.nan, x)
    x_zero = jnp.where(pad, 0.0, x)

    def loss(params, x):
        c, y = rnn.apply(params, x, seq_lengths=lengths)
        return jnp.sum(y**2) + sum(jnp.sum(l**2) for l in jax.tree.leaves(c))

    g = jax.jit(jax.value_and_grad(loss))
    v_bad, g_bad = g(params, x_bad)
    v_ok, g_ok = g(params, x_zero)
    assert np.isfinite(v_bad) and v_bad == v_ok
    for a, b in zip(jax.tree.leaves(g_bad), jax.tree.leaves(g_ok)):
        assert np.all(np.isfinite(a)), "non-finite padding leaked into a gradient"
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# the kernel itself


@pytest.mark.parametrize("method", ["associative", "sequential", "chunked"], ids=["par", "seq", "chunk"])
@pytest.mark.parametrize("log_space", [True, False], ids=["log", "lin"])
def test_linear_recurrence_kernel(log_space, method, helpers):
    """zoo.linear_recurrence solves h_t = a_t h_{t-1} + b_t (time-major, any-sign h0) with prefix masks."""
    T, B, H = 13, 3, 4
    log_a = -jnp.abs(helpers.randn((T, B, H), 50))  # 0 < a <= 1
    b = helpers.randn((T, B, H), 51)
    if log_space:
        b = jnp.abs(b) + 0.1  # log-space needs b > 0
    h0 = helpers.randn((B, H), 52)
    h_ref, hs_ref = _np_linear_recurrence(
        np.exp(np.asarray(log_a, np.float64)), np.asarray(b, np.float64), h0
    )
    b_in = jnp.log(b) if log_space else b
    h, hs = jax.jit(
        lambda la, bb, h0, m: zoo.linear_recurrence(la, bb, h0, m, log_space=log_space, method=method, chunk_size=4)
    )(log_a, b_in, h0, None)
    np.testing.assert_allclose(hs, hs_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-5)

    lengths = jnp.array([13, 0, 5])
    mask = zoo.lengths_to_mask(lengths, T)
    assert mask.shape == (T, B) and int(mask.sum()) == 18
    h_m, hs_m = zoo.linear_recurrence(log_a, b_in, h0, mask, log_space=log_space, method=method, chunk_size=4)
    np.testing.assert_allclose(hs_m[:, 0], hs_ref[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hs_m[:5, 2], hs_ref[:5, 2], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(hs_m[:, 1]) == 0) and np.all(np.asarray(hs_m[5:, 2]) == 0)
    np.testing.assert_allclose(h_m, np.stack([hs_ref[12, 0], h0[1], hs_ref[4, 2]]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls_name", list(CLASSES))
def test_state_is_convex_combination(cls_name, helpers):
    """States are convex mixes of the previous state and the candidate: |h_t| <= max(|h0|, |cand|)."""
    rnn = zoo.RNN(CLASSES[cls_name](features=6, log_space=False), return_carry=True)
    x = helpers.randn((2, 64, 3), 60, scale=4.0)
    params = helpers.init_params(rnn, x, seed=61)
    h0 = jnp.full((2, 6), -10.0)
    _, y = helpers.apply(rnn, params, x, initial_carry=h0)
    k = x @ params["params"]["cell"]["input_kernel"] + params["params"]["cell"]["bias"]
    bound = max(10.0, float(jnp.max(jnp.abs(k[..., -6:]))))
    assert float(jnp.max(jnp.abs(y))) <= bound * (1 + 1e-5)
    assert np.all(np.diff(np.asarray(y[:, :3]), axis=1) != 0)  # the state moves
