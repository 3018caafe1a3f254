"""Input checks: bad shapes raise ValueError naming the argument and the shapes, in Python,
before any tracing (so also under jax.jit); bad sequence lengths raise eagerly, and under jit
only in the opt-in checked mode (zoo.checked)."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import zoo

B, T, F, H = 4, 7, 3, 5

# ---------------------------------------------------------------------------
# helpers


def _shape(*dims):
    """Regex for a shape as the messages print it, e.g. (4, 5); (1) or (1,) for one axis."""
    if len(dims) == 1:
        return rf"\({dims[0]},?\)"
    return re.escape("(" + ", ".join(map(str, dims)) + ")")


@pytest.fixture(scope="module")
def lstm():
    """An LSTM RNN with parameters for (B, T, F) inputs, its zero carry and inputs."""
    rnn = zoo.RNN(zoo.LSTMCell(features=H), return_carry=True)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, F)), jnp.float32)
    shapes = jax.eval_shape(lambda: rnn.init(jax.random.key(0), x))
    params = jax.tree.map(lambda s: jnp.full(s.shape, 0.1, s.dtype), shapes)
    carry = rnn.cell.initialize_carry(None, (B, F))
    return rnn, params, x, carry


def _raises_everywhere(fn, args, match):
    """``fn(*args)`` raises ValueError(match) eagerly, under jax.jit and under jax.eval_shape
    (the check needs shapes only, so it fires before any computation is traced)."""
    with pytest.raises(ValueError, match=match):
        fn(*args)
    with pytest.raises(ValueError, match=match):
        jax.jit(fn)(*args)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(fn, *args)


# ---------------------------------------------------------------------------
# inputs


@pytest.mark.parametrize("shape", [(T,), ()], ids=["rank1", "rank0"])
def test_inputs_of_rank_below_2(shape, lstm):
    """Inputs of rank 1 or 0 raise ValueError naming inputs, the expected layout and the shape."""
    rnn, params, _, _ = lstm
    x = jnp.ones(shape)
    match = r"inputs must have shape \(batch\.\.\., seq, features\).*got shape " + (
        _shape(*shape) if shape else r"\(\)"
    )
    _raises_everywhere(lambda x: rnn.apply(params, x), (x,), match)
    with pytest.raises(ValueError, match="inputs"):
        rnn.init(jax.random.key(0), x)


def test_feature_size_mismatch_with_params(lstm):
    """Applying params made for F features to inputs with F+2 features names input_kernel and both shapes."""
    rnn, params, _x, _ = lstm
    x_wide = jnp.ones((B, T, F + 2))
    match = (
        rf"inputs have {F + 2} features.*'input_kernel' has shape {_shape(F, 4 * H)}"
        rf".*expected {_shape(F + 2, 4 * H)}"
    )
    _raises_everywhere(lambda x: rnn.apply(params, x), (x_wide,), match)


def test_time_major_rank_error_names_time_major_layout():
    """With time_major=True the message shows the time-major layout."""
    rnn = zoo.RNN(zoo.GRUCell(features=H), time_major=True)
    with pytest.raises(ValueError, match=r"\(seq, batch\.\.\., features\)"):
        rnn.init(jax.random.key(0), jnp.ones((T,)))


# ---------------------------------------------------------------------------
# initial_carry


@pytest.mark.parametrize(
    "bad, match",
    [
        (
            lambda c: jax.tree.map(lambda a: a[:3], c),
            rf"initial_carry has a leaf of shape {_shape(3, H)}, expected {_shape(B, H)}",
        ),
        (
            lambda c: jax.tree.map(lambda a: a[:, :4], c),
            rf"initial_carry has a leaf of shape {_shape(B, 4)}, expected {_shape(B, H)}",
        ),
        (
            lambda c: jax.tree.map(lambda a: a[None], c),
            rf"initial_carry has a leaf of shape {_shape(1, B, H)}, expected {_shape(B, H)}",
        ),
        (lambda c: c[1], r"initial_carry has structure .*expected"),
        (lambda c: (c[0], c[1], c[1]), r"initial_carry has structure .*expected"),
    ],
    ids=["batch", "hidden", "extra-axis", "h-instead-of-(c,h)", "triple"],
)
def test_bad_initial_carry(bad, match, lstm):
    """initial_carry with a wrong batch size, hidden size, rank or structure raises ValueError naming it."""
    rnn, params, x, carry = lstm
    _raises_everywhere(lambda x, c: rnn.apply(params, x, initial_carry=c), (x, bad(carry)), match)


def test_bidirectional_initial_carry_must_be_pair(lstm):
    """Bidirectional's initial_carry must be a (forward, backward) pair."""
    _, _, x, carry = lstm
    bi = zoo.Bidirectional(zoo.RNN(zoo.LSTMCell(H)), zoo.RNN(zoo.LSTMCell(H)))
    params = jax.eval_shape(lambda: bi.init(jax.random.key(0), x))
    with pytest.raises(ValueError, match=r"Bidirectional: initial_carry must be a pair"):
        jax.eval_shape(lambda p: bi.apply(p, x, initial_carry=carry[0]), params)


# ---------------------------------------------------------------------------
# seq_lengths: shape and dtype (static)


@pytest.mark.parametrize(
    "lengths, match",
    [
        (jnp.array([3]), rf"seq_lengths has shape {_shape(1)}, expected .*{_shape(B)}"),
        (jnp.full((B, 1), 3), rf"seq_lengths has shape {_shape(B, 1)}, expected .*{_shape(B)}"),
        (jnp.array(3), rf"seq_lengths has shape \(\), expected .*{_shape(B)}"),
    ],
    ids=["(1,)", "(B,1)", "scalar"],
)
def test_seq_lengths_wrong_shape(lengths, match, lstm):
    """seq_lengths whose shape is not the batch shape raises ValueError with both shapes (no broadcasting)."""
    rnn, params, x, _ = lstm
    _raises_everywhere(lambda x, n: rnn.apply(params, x, seq_lengths=n), (x, lengths), match)


def test_seq_lengths_shape_with_several_batch_axes(lstm):
    """With batch axes (2, 2), flat lengths of shape (4,) are rejected: lengths must have the batch shape."""
    rnn, params, x, _ = lstm
    x22 = x.reshape((2, 2, T, F))
    with pytest.raises(ValueError, match=rf"seq_lengths has shape {_shape(4)}, expected .*{_shape(2, 2)}"):
        rnn.apply(params, x22, seq_lengths=jnp.array([1, 2, 3, 4]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bool_])
def test_seq_lengths_must_be_integers(dtype, lstm):
    """seq_lengths of a float (or bool) dtype raises ValueError naming seq_lengths and the dtype."""
    rnn, params, x, _ = lstm
    lengths = jnp.ones((B,), dtype)
    match = rf"seq_lengths must hold integers, got dtype {jnp.dtype(dtype).name}"
    _raises_everywhere(lambda x, n: rnn.apply(params, x, seq_lengths=n), (x, lengths), match)


def test_seq_lengths_python_list(lstm):
    """A Python list of lengths works like an integer array (and a list of floats is rejected)."""
    rnn, params, x, _ = lstm
    out_list = rnn.apply(params, x, seq_lengths=[7, 0, 3, 5])
    out_array = rnn.apply(params, x, seq_lengths=jnp.array([7, 0, 3, 5]))
    for a, b in zip(jax.tree.leaves(out_list), jax.tree.leaves(out_array)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="seq_lengths must hold integers"):
        rnn.apply(params, x, seq_lengths=[7.0, 0.0, 3.0, 5.0])


# ---------------------------------------------------------------------------
# seq_lengths: values (eager, and checked mode under jit)


@pytest.mark.parametrize("bad", [-1, T + 1], ids=["negative", "too-long"])
@pytest.mark.parametrize("as_numpy", [False, True], ids=["jax", "numpy"])
def test_seq_lengths_out_of_range_raise_eagerly(bad, as_numpy, lstm):
    """Concrete lengths outside [0, T] raise ValueError naming seq_lengths, bounds, value and index."""
    rnn, params, x, _ = lstm
    lengths = np.array([T, 0, bad, 2])
    lengths = lengths if as_numpy else jnp.asarray(lengths)
    match = rf"seq_lengths must be .*between 0 and {T}.*got {bad} at index \(2,\)"
    with pytest.raises(ValueError, match=match):
        rnn.apply(params, x, seq_lengths=lengths)


def test_seq_lengths_boundaries_are_valid(lstm):
    """Lengths 0 and T are accepted eagerly and by the checked mode."""
    rnn, params, x, _ = lstm
    lengths = jnp.array([0, T, 0, T])
    rnn.apply(params, x, seq_lengths=lengths)
    zoo.checked(jax.jit(lambda p, x, n: rnn.apply(p, x, seq_lengths=n)))(params, x, lengths)


@pytest.mark.parametrize("bad", [-3, T + 1], ids=["negative", "too-long"])
def test_seq_lengths_out_of_range_under_jit(bad, lstm):
    """Under jit bad lengths pass silently by default, but zoo.checked(jax.jit(f)) raises JaxRuntimeError."""
    rnn, params, x, _ = lstm
    f = jax.jit(lambda p, x, n: rnn.apply(p, x, seq_lengths=n))
    bad_lengths = jnp.array([T, 1, bad, 2])
    jax.block_until_ready(f(params, x, bad_lengths))  # default: no check, no error
    checked = zoo.checked(f)
    with pytest.raises(checkify.JaxRuntimeError, match=rf"seq_lengths must be .*between 0 and {T}"):
        checked(params, x, bad_lengths)
    # good lengths pass through the checked function unchanged
    good = jnp.array([T, 1, 4, 2])
    out_checked, out_plain = checked(params, x, good), f(params, x, good)
    for a, b in zip(jax.tree.leaves(out_checked), jax.tree.leaves(out_plain)):
        np.testing.assert_array_equal(a, b)


def test_checked_reports_the_range_of_bad_values(lstm):
    """The checked-mode error reports the smallest and largest length it saw."""
    rnn, params, x, _ = lstm
    f = zoo.checked(jax.jit(lambda p, x, n: rnn.apply(p, x, seq_lengths=n)))
    with pytest.raises(checkify.JaxRuntimeError, match=r"got values from -2 to 9"):
        f(params, x, jnp.array([-2, 1, 9, 2]))


# ---------------------------------------------------------------------------
# single cell steps and modules


@pytest.mark.parametrize("cell_name", ["simple", "lstm", "gru", "mingru_log_par"])
@pytest.mark.parametrize("carry_shape", [(3, H), (B, H + 1), (H,)], ids=["batch", "hidden", "rank"])
def test_cell_step_rejects_wrong_carry_shape(cell_name, carry_shape, helpers):
    """A cell step with a carry leaf of the wrong shape raises ValueError naming carry and both shapes."""
    cell = helpers.make_cell(cell_name, features=H)
    x = jnp.ones((B, F))
    variables = jax.eval_shape(lambda: cell.init(jax.random.key(0), cell.initialize_carry(None, x.shape), x))
    bad = jax.tree.map(lambda c: jnp.zeros(carry_shape, c.dtype), cell.initialize_carry(None, x.shape))
    match = rf"carry has a leaf of shape {_shape(*carry_shape)}, expected {_shape(B, H)}"
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda v: cell.apply(v, bad, x), variables)


def test_cell_step_rejects_wrong_carry_structure():
    """LSTMCell step given h instead of (c, h) raises ValueError naming the carry.

    With batch 2, ``c, _ = carry`` would otherwise silently unpack h's two rows.
    """
    cell = zoo.LSTMCell(features=H)
    x = jnp.ones((2, F))
    c, h = cell.initialize_carry(None, x.shape)
    variables = jax.eval_shape(lambda: cell.init(jax.random.key(0), (c, h), x))
    with pytest.raises(ValueError, match="carry"):
        jax.eval_shape(lambda v: cell.apply(v, h, x), variables)


def test_cell_step_rejects_rank0_inputs():
    """A single step on a scalar input raises ValueError naming inputs."""
    cell = zoo.GRUCell(features=H)
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch\.\.\., features\); got shape \(\)"):
        cell.init(jax.random.key(0), jnp.zeros((H,)), jnp.ones(()))


def test_rnn_rejects_flax_cells():
    """zoo.RNN needs a zoo cell; a flax.linen cell raises TypeError pointing to flax.linen.RNN."""
    rnn = zoo.RNN(nn.LSTMCell(features=H))
    with pytest.raises(TypeError, match="flax.linen.RNN"):
        rnn.init(jax.random.key(0), jnp.ones((B, T, F)))


def test_stack_argument_errors(lstm):
    """RNNStack: num_layers < 1 and an initial_carry list of the wrong length raise ValueError."""
    _, _, x, carry = lstm
    with pytest.raises(ValueError, match=r"num_layers must be >= 1, got 0"):
        jax.eval_shape(lambda: zoo.RNNStack(zoo.LSTMCell(H), num_layers=0).init(jax.random.key(0), x))
    stack = zoo.RNNStack(zoo.LSTMCell(H), num_layers=2)
    with pytest.raises(ValueError, match=r"one entry per layer \(2\), got 1"):
        jax.eval_shape(lambda: stack.init(jax.random.key(0), x, initial_carry=[carry]))
