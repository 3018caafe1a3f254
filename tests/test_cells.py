"""Recurrent cells: zoo.RNN against a step-by-step loop and an independent float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo

# ---------------------------------------------------------------------------
# helpers: the cells' equations, written from the docstrings in NumPy float64


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _g(x):
    """minGRU/minLSTM positive candidate activation: x + 1/2 for x >= 0, sigmoid(x) below."""
    return np.where(x >= 0, x + 0.5, _sigmoid(np.minimum(x, 0.0)))


def _np_step(name, p, carry, x):
    """One step of cell ``name`` with float64 parameters ``p``; returns (carry, y)."""
    H = p["bias"].shape[0]
    if name == "simple":
        h = np.tanh(x @ p["input_kernel"] + p["bias"] + carry @ p["recurrent_kernel"])
        return h, h
    if name == "lstm":
        c, h = carry
        H //= 4
        k = x @ p["input_kernel"] + p["bias"] + h @ p["recurrent_kernel"]
        i, f, g, o = (k[:, j * H : (j + 1) * H] for j in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        return (c, h), h
    if name.startswith("gru"):
        h = carry
        H //= 3
        wi, wh, b = p["input_kernel"], p["recurrent_kernel"], p["bias"]
        xk = x @ wi + b
        xr, xz, xn = xk[:, :H], xk[:, H : 2 * H], xk[:, 2 * H :]
        r = _sigmoid(xr + h @ wh[:, :H])
        z = _sigmoid(xz + h @ wh[:, H : 2 * H])
        if name == "gru":  # reset after the matmul, with b_hn
            n = np.tanh(xn + r * (h @ wh[:, 2 * H :] + p["recurrent_bias"]))
        else:  # Cho et al.: reset before the matmul
            n = np.tanh(xn + (r * h) @ wh[:, 2 * H :])
        h = (1.0 - z) * n + z * h
        return h, h
    log_space = "_log_" in name
    k = x @ p["input_kernel"] + p["bias"]
    h = carry
    if name.startswith("mingru"):
        H //= 2
        z = _sigmoid(k[:, :H])
        cand = k[:, H:]
        cand = _g(cand) if log_space else cand
        h = (1.0 - z) * h + z * cand
        return h, h
    # minlstm
    H //= 3
    f, i = _sigmoid(k[:, :H]), _sigmoid(k[:, H : 2 * H])
    cand = k[:, 2 * H :]
    cand = _g(cand) if log_space else cand
    h = f / (f + i) * h + i / (f + i) * cand
    return h, h


def np_reference(name, params, x, carry, seq_lengths=None):
    """Float64 NumPy run of cell ``name``: outputs zero and carry frozen past each length."""
    p = {k: np.asarray(v, np.float64) for k, v in params["params"]["cell"].items()}
    x = np.asarray(x, np.float64)
    carry = jax.tree.map(lambda c: np.asarray(c, np.float64), carry)
    B, T = x.shape[:2]
    lengths = np.full(B, T) if seq_lengths is None else np.asarray(seq_lengths)
    ys = []
    for t in range(T):
        new, y = _np_step(name, p, carry, x[:, t])
        valid = (t < lengths)[:, None]
        carry = jax.tree.map(lambda n, o, v=valid: np.where(v, n, o), new, carry)
        ys.append(np.where(valid, y, 0.0))
    return carry, np.stack(ys, axis=1)


def _setup(helpers, name, B=3, T=7, F=4, H=5, seed=0):
    cell = helpers.make_cell(name, features=H)
    x = helpers.randn((B, T, F), seed)
    rnn = zoo.RNN(cell, return_carry=True)
    params = helpers.init_params(rnn, x, seed=seed + 1)
    carry0 = helpers.random_carry(cell, (B,), seed + 2)
    return cell, rnn, params, x, carry0


def _assert_tree_close(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(v, np.float64), **tol)


def _init_cell(cell, in_features=4, batch=2):
    """Real ``cell.init`` (runs the cell's initialisers)."""
    x = jnp.ones((batch, in_features))
    return cell.init(jax.random.key(0), cell.initialize_carry(None, x.shape), x)["params"]


# ---------------------------------------------------------------------------
# tests


def test_rnn_matches_step_loop(cell_name, helpers):
    """zoo.RNN's sequence kernel gives the same outputs and final carry as stepping the cell by hand."""
    cell, rnn, params, x, carry0 = _setup(helpers, cell_name)
    carry, ys = rnn.apply(params, x, initial_carry=carry0)
    ref_carry, ref_ys = helpers.loop_reference(cell, params, x, carry0)
    assert ys.shape == ref_ys.shape == (3, 7, 5)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=1e-5)
    _assert_tree_close(carry, ref_carry, rtol=1e-5, atol=1e-5)


def test_rnn_matches_numpy_float64_reference(cell_name, helpers):
    """zoo.RNN agrees with the docstring equations in float64 NumPy (catches a wrong gate order)."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=10)
    carry, ys = rnn.apply(params, x, initial_carry=carry0)
    ref_carry, ref_ys = np_reference(cell_name, params, x, carry0)
    np.testing.assert_allclose(ys, ref_ys, rtol=2e-5, atol=2e-5)
    _assert_tree_close(carry, ref_carry, rtol=2e-5, atol=2e-5)


def test_rnn_with_lengths_matches_numpy_reference(cell_name, helpers):
    """With seq_lengths, outputs and carry follow the float64 reference (state frozen past each length)."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, B=4, seed=20)
    lengths = jnp.array([7, 0, 3, 5])
    carry, ys = rnn.apply(params, x, initial_carry=carry0, seq_lengths=lengths)
    ref_carry, ref_ys = np_reference(cell_name, params, x, carry0, lengths)
    np.testing.assert_allclose(ys, ref_ys, rtol=2e-5, atol=2e-5)
    _assert_tree_close(carry, ref_carry, rtol=2e-5, atol=2e-5)


def test_single_step_matches_numpy_reference(cell_name, helpers):
    """One call of the cell (the generation path) computes one step of the reference equations."""
    cell = helpers.make_cell(cell_name, features=5)
    x = helpers.randn((3, 4), 30)
    carry = helpers.random_carry(cell, (3,), 31)
    variables = helpers.init_params(cell, carry, x, seed=32)
    new, y = cell.apply(variables, carry, x)
    ref_new, ref_y = _np_step(
        cell_name,
        {k: np.asarray(v, np.float64) for k, v in variables["params"].items()},
        jax.tree.map(lambda c: np.asarray(c, np.float64), carry),
        np.asarray(x, np.float64),
    )
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
    _assert_tree_close(new, ref_new, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name, gates, has_recurrent, has_recurrent_bias",
    [
        ("simple", 1, True, False),
        ("lstm", 4, True, False),
        ("gru", 3, True, True),
        ("gru_reset_before", 3, True, False),
        ("mingru_log_par", 2, False, False),
        ("minlstm_lin_seq", 3, False, False),
    ],
)
def test_parameter_shapes(name, gates, has_recurrent, has_recurrent_bias, helpers):
    """Each cell creates exactly the documented parameters: (in, gates*H), (H, gates*H), (gates*H,)."""
    cell = helpers.make_cell(name, features=5)
    x = jnp.ones((2, 4))
    variables = jax.eval_shape(lambda: cell.init(jax.random.key(0), cell.initialize_carry(None, x.shape), x))
    shapes = {k: v.shape for k, v in variables["params"].items()}
    expected = {"input_kernel": (4, 5 * gates), "bias": (5 * gates,)}
    if has_recurrent:
        expected["recurrent_kernel"] = (5, 5 * gates)
    if has_recurrent_bias:
        expected["recurrent_bias"] = (5,)
    assert shapes == expected


@pytest.mark.parametrize("name", ["simple", "lstm", "gru", "mingru_log_par"])
def test_initialize_carry_shape_and_dtype(name, helpers):
    """initialize_carry: float32 zeros of (batch..., features), even with bfloat16 params; LSTM: (c, h)."""
    cell = helpers.make_cell(name, features=5, param_dtype=jnp.bfloat16)
    carry = cell.initialize_carry(jax.random.key(0), (2, 3, 4))
    leaves = jax.tree.leaves(carry)
    assert len(leaves) == (2 if name == "lstm" else 1)
    for leaf in leaves:
        assert leaf.shape == (2, 3, 5)
        assert leaf.dtype == jnp.float32
        assert not np.any(np.asarray(leaf))


@pytest.mark.parametrize("forget_bias", [1.0, 0.0, 2.5])
def test_lstm_forget_bias_on_forget_gate_only(forget_bias):
    """LSTMCell's forget_bias is added to the forget gate's slice (i, f, g, o order) of the bias only."""
    bias = _init_cell(zoo.LSTMCell(features=3, forget_bias=forget_bias))["bias"]
    expected = np.zeros(12)
    expected[3:6] = forget_bias
    np.testing.assert_array_equal(bias, expected)


@pytest.mark.parametrize("name, gates", [("lstm", 4), ("gru", 3)])
def test_recurrent_kernel_orthogonal_per_gate(name, gates, helpers):
    """The default recurrent kernel is orthogonal block by block (one (H, H) block per gate)."""
    H = 3
    w = _init_cell(helpers.make_cell(name, features=H))["recurrent_kernel"]
    blocks = [np.asarray(w[:, j * H : (j + 1) * H]) for j in range(gates)]
    for blk in blocks:
        np.testing.assert_allclose(blk.T @ blk, np.eye(H), atol=1e-5)
    assert not np.allclose(blocks[0], blocks[1])  # independent blocks, not copies


def test_simple_rnn_relu_activation(helpers):
    """SimpleRNNCell(activation_fn=relu) applies relu, not tanh (outputs non-negative and unbounded)."""
    rnn = zoo.RNN(zoo.SimpleRNNCell(features=5, activation_fn=jax.nn.relu))
    x = helpers.randn((3, 7, 4), 40, scale=3.0)
    params = helpers.init_params(rnn, x, seed=41)
    ys = rnn.apply(params, x)
    p = {k: np.asarray(v, np.float64) for k, v in params["params"]["cell"].items()}
    h, ref = np.zeros((3, 5)), []
    for t in range(7):
        h = np.maximum(
            np.asarray(x[:, t], np.float64) @ p["input_kernel"] + p["bias"] + h @ p["recurrent_kernel"], 0
        )
        ref.append(h)
    np.testing.assert_allclose(ys, np.stack(ref, 1), rtol=1e-5, atol=1e-5)
    assert float(jnp.max(ys)) > 1.0


@pytest.mark.parametrize("batch_shape", [(), (2, 3)])
def test_single_step_arbitrary_batch_axes(batch_shape, helpers):
    """A cell step on (batch..., in) equals the step on the flattened batch (and works unbatched)."""
    cell = helpers.make_cell("lstm", features=5)
    x = helpers.randn(batch_shape + (4,), 50)
    carry = helpers.random_carry(cell, batch_shape, 51)
    variables = helpers.init_params(cell, carry, x, seed=52)
    new, y = cell.apply(variables, carry, x)
    assert y.shape == batch_shape + (5,)
    flat = lambda a: a.reshape((-1, a.shape[-1]))
    new_f, y_f = cell.apply(variables, jax.tree.map(flat, carry), flat(x))
    np.testing.assert_allclose(flat(y), y_f, rtol=1e-6, atol=1e-6)
    _assert_tree_close(jax.tree.map(flat, new), new_f, rtol=1e-6, atol=1e-6)
