"""The sequence drivers: zoo.RNN (padding, reverse, streaming, gradients, transforms, dtypes),
zoo.Bidirectional and zoo.RNNStack."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import zoo

# One configuration per kernel path, for the costlier tests (XLA compilation
# dominates the run time: each test compiles a few small programs).
CORE_CELLS = ["simple", "lstm", "gru", "gru_reset_before", "mingru_log_par", "minlstm_lin_seq"]
# Every cell type, and each (log_space, method) combination of the minimal cells.
PATH_CELLS = CORE_CELLS + ["mingru_lin_par", "minlstm_log_seq", "mingru_log_chunk", "minlstm_lin_chunk"]
MINIMAL_CELLS = ["mingru_log_par", "minlstm_lin_seq", "mingru_lin_par", "minlstm_log_seq", "mingru_log_chunk",
                 "minlstm_lin_chunk"]
# For layout / transformation tests: the fused kernel, the plain scan, the associative scan.
LAYOUT_CELLS = ["lstm", "gru", "gru_reset_before", "mingru_log_par"]
# Cells whose RNN path is a custom_vjp (fused_recurrence, the chunked scan): reverse mode only.
CUSTOM_VJP_CELLS = {"simple", "lstm", "gru", "mingru_log_chunk", "minlstm_lin_chunk"}

# ---------------------------------------------------------------------------
# helpers


def _close(a, b, rtol=1e-5, atol=1e-5):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.shape(u) == np.shape(v)
        np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(v, np.float64), rtol=rtol, atol=atol)


def _rows(tree, idx):
    """Batch rows ``idx`` (an int or a slice) of every leaf."""
    return jax.tree.map(lambda c: c[idx], tree)


def _setup(helpers, name, B=4, T=7, F=4, H=5, seed=0, **rnn_kwargs):
    cell = helpers.make_cell(name, features=H)
    rnn = zoo.RNN(cell, return_carry=True, **rnn_kwargs)
    x = helpers.randn((B, T, F), seed)
    params = helpers.init_params(rnn, x, seed=seed + 1)
    carry0 = helpers.random_carry(cell, (B,), seed + 2)
    return cell, rnn, params, x, carry0


def _flip_prefix(a, lengths):
    """Reverse the first lengths[b] steps of each batch-major row by hand (rest unchanged)."""
    a = np.asarray(a)
    out = a.copy()
    for b, n in enumerate(np.asarray(lengths)):
        out[b, :n] = a[b, :n][::-1]
    return out


def _check_against_single_runs(helpers, rnn, params, x, carry0, lengths, carry, ys):
    """Each row of a padded batch equals that sequence run alone at its true length."""
    for b, n in enumerate(np.asarray(lengths)):
        n = int(n)
        assert np.all(np.asarray(ys[b, n:]) == 0.0), f"row {b}: non-zero output on padding"
        if n == 0:
            _close(_rows(carry, b), _rows(carry0, b), rtol=0, atol=0)  # empty: carry untouched
            continue
        c_b, y_b = helpers.apply(rnn, params, x[b, :n], initial_carry=_rows(carry0, b))  # unbatched run
        np.testing.assert_allclose(ys[b, :n], y_b, rtol=1e-5, atol=1e-5)
        _close(_rows(carry, b), c_b)


# ---------------------------------------------------------------------------
# padding (seq_lengths)


@pytest.mark.parametrize("cell_name", PATH_CELLS)
def test_padded_batch_equals_single_sequences(cell_name, helpers):
    """Padded batch: valid outputs and carry equal each sequence run alone; padding outputs are exactly 0."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name)
    lengths = jnp.array([3, 0, 7, 5])  # includes empty and full
    carry, ys = helpers.apply(rnn, params, x, initial_carry=carry0, seq_lengths=lengths)
    _check_against_single_runs(helpers, rnn, params, x, carry0, lengths, carry, ys)


def test_padding_values_do_not_matter(cell_name, helpers):
    """Changing the inputs on padded steps (to large values) changes neither outputs nor carry."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=5)
    lengths = jnp.array([3, 0, 7, 5])
    pad = jnp.arange(7)[None, :, None] >= lengths[:, None, None]
    x2 = jnp.where(pad, 100.0 * helpers.randn(x.shape, 6), x)
    out1 = helpers.apply(rnn, params, x, initial_carry=carry0, seq_lengths=lengths)
    out2 = helpers.apply(rnn, params, x2, initial_carry=carry0, seq_lengths=lengths)
    _close(out1, out2, rtol=0, atol=0)


@pytest.mark.parametrize("cell_name", ["lstm", "gru_reset_before", "mingru_log_par"])
@pytest.mark.parametrize("keep_order", [True, False])
def test_reverse_padded_batch_equals_single_sequences(cell_name, keep_order, helpers):
    """reverse=True with lengths: each row equals its sequence reversed alone; padding stays last, zero."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=10, reverse=True, keep_order=keep_order)
    lengths = jnp.array([5, 7, 0, 2])
    carry, ys = helpers.apply(rnn, params, x, initial_carry=carry0, seq_lengths=lengths)
    _check_against_single_runs(helpers, rnn, params, x, carry0, lengths, carry, ys)


@pytest.mark.parametrize("cell_name", ["lstm", "mingru_log_par"])
def test_bidirectional_padded_batch_equals_single_sequences(cell_name, helpers):
    """Bidirectional with lengths: each row (both directions, both carries) equals its sequence run alone."""
    cell = helpers.make_cell(cell_name, features=5)
    # two cell instances: one shared instance would share its parameters (flax semantics)
    bi = zoo.Bidirectional(zoo.RNN(cell), zoo.RNN(cell.clone()), return_carry=True)
    x = helpers.randn((4, 7, 4), 20)
    params = helpers.init_params(bi, x, seed=21)
    carry0 = (helpers.random_carry(cell, (4,), 22), helpers.random_carry(cell, (4,), 23))
    lengths = jnp.array([0, 4, 7, 1])
    carry, ys = helpers.apply(bi, params, x, initial_carry=carry0, seq_lengths=lengths)
    assert ys.shape == (4, 7, 10)
    _check_against_single_runs(helpers, bi, params, x, carry0, lengths, carry, ys)


# ---------------------------------------------------------------------------
# reverse and Bidirectional against flips done by hand


@pytest.mark.parametrize("cell_name", CORE_CELLS)
def test_reverse_equals_flipped_input(cell_name, helpers):
    """reverse=True runs the flipped sequence; keep_order=False returns it so, keep_order=True flips back."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=30)
    c_fwd, y_fwd = helpers.apply(rnn, params, jnp.flip(x, axis=1), initial_carry=carry0)
    c_rev, y_rev = helpers.apply(rnn, params, x, initial_carry=carry0, reverse=True, keep_order=False)
    c_keep, y_keep = helpers.apply(rnn, params, x, initial_carry=carry0, reverse=True, keep_order=True)
    _close((c_rev, y_rev), (c_fwd, y_fwd))
    _close((c_keep, y_keep), (c_fwd, jnp.flip(y_fwd, axis=1)))
    assert not np.allclose(y_keep, y_rev)  # the two orders really differ


@pytest.mark.parametrize("cell_name", CORE_CELLS)
def test_reverse_with_lengths_flips_valid_prefix(cell_name, helpers):
    """reverse=True with lengths equals a forward run over each sequence's valid prefix flipped by hand."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=40)
    lengths = np.array([6, 0, 7, 3])
    x_flip = jnp.asarray(_flip_prefix(x, lengths))
    c_fwd, y_fwd = helpers.apply(rnn, params, x_flip, initial_carry=carry0, seq_lengths=lengths)
    c_rev, y_rev = helpers.apply(rnn, params, x, initial_carry=carry0, seq_lengths=lengths, reverse=True)
    c_keep, y_keep = helpers.apply(
        rnn, params, x, initial_carry=carry0, seq_lengths=lengths, reverse=True, keep_order=True
    )
    _close((c_rev, y_rev), (c_fwd, y_fwd))
    _close((c_keep, y_keep), (c_fwd, _flip_prefix(y_fwd, lengths)))


@pytest.mark.parametrize("cell_name", ["lstm", "gru_reset_before", "minlstm_log_par"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_bidirectional_is_concat_of_forward_and_flipped_backward(cell_name, with_lengths, helpers):
    """Bidirectional = concat(forward(x), flip(backward(flip(x)))) with carry (fwd_carry, bwd_carry)."""
    cell = helpers.make_cell(cell_name, features=5)
    bi = zoo.Bidirectional(zoo.RNN(cell), zoo.RNN(cell.clone()), return_carry=True)
    x = helpers.randn((4, 7, 4), 50)
    params = helpers.init_params(bi, x, seed=51)
    lengths = np.array([7, 2, 0, 5]) if with_lengths else np.full(4, 7)
    seq_lengths = jnp.asarray(lengths) if with_lengths else None
    carry, ys = helpers.apply(bi, params, x, seq_lengths=seq_lengths)

    rnn = zoo.RNN(cell, return_carry=True)
    fwd = {"params": params["params"]["forward_rnn"]}
    bwd = {"params": params["params"]["backward_rnn"]}
    c_f, y_f = helpers.apply(rnn, fwd, x, seq_lengths=seq_lengths)
    c_b, y_b = helpers.apply(rnn, bwd, jnp.asarray(_flip_prefix(x, lengths)), seq_lengths=seq_lengths)
    y_b = _flip_prefix(y_b, lengths)
    _close(ys, np.concatenate([y_f, y_b], axis=-1))
    _close(carry, (c_f, c_b))


def test_bidirectional_custom_merge_and_directions_differ(helpers):
    """merge_fn replaces concatenation, and the forward and backward halves use their own parameters."""
    cell = helpers.make_cell("gru", features=5)
    x = helpers.randn((3, 6, 4), 55)
    bi = zoo.Bidirectional(zoo.RNN(cell), zoo.RNN(cell.clone()))
    params = helpers.init_params(bi, x, seed=56)
    ys = helpers.apply(bi, params, x)
    summed = helpers.apply(
        zoo.Bidirectional(zoo.RNN(cell), zoo.RNN(cell.clone()), merge_fn=jnp.add), params, x
    )
    np.testing.assert_allclose(summed, ys[..., :5] + ys[..., 5:], rtol=1e-6, atol=1e-6)
    p = params["params"]
    swapped = {"params": {"forward_rnn": p["backward_rnn"], "backward_rnn": p["forward_rnn"]}}
    assert not np.allclose(helpers.apply(bi, swapped, x), ys)


# ---------------------------------------------------------------------------
# streaming


@pytest.mark.parametrize("cell_name", PATH_CELLS)
def test_chunked_streaming_equals_one_pass(cell_name, helpers):
    """Feeding the sequence in 2 chunks, passing the carry along, gives the one-pass outputs and carry."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, B=3, T=10, seed=60)
    c_full, y_full = helpers.apply(rnn, params, x, initial_carry=carry0)
    c_1, y_1 = helpers.apply(rnn, params, x[:, :4], initial_carry=carry0)
    c_2, y_2 = helpers.apply(rnn, params, x[:, 4:], initial_carry=c_1)
    _close((c_2, jnp.concatenate([y_1, y_2], axis=1)), (c_full, y_full))


def test_chunked_streaming_three_chunks_with_lengths(helpers):
    """Streaming a padded batch in 3 chunks, lengths clip(L - offset, 0, size) per chunk, matches one pass."""
    _cell, rnn, params, x, carry0 = _setup(helpers, "lstm", B=4, T=10, seed=65)
    lengths = np.array([10, 0, 4, 7])
    c_full, y_full = helpers.apply(rnn, params, x, initial_carry=carry0, seq_lengths=lengths)
    carry, ys = carry0, []
    for lo, hi in [(0, 3), (3, 4), (4, 10)]:
        chunk_len = jnp.asarray(np.clip(lengths - lo, 0, hi - lo))
        carry, y = helpers.apply(rnn, params, x[:, lo:hi], initial_carry=carry, seq_lengths=chunk_len)
        ys.append(y)
    _close((carry, jnp.concatenate(ys, axis=1)), (c_full, y_full))


# ---------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize(
    "cell_name, with_lengths",
    [(c, w) for c in ["simple", "lstm", "gru", "gru_reset_before"] for w in (False, True)]
    + [(c, True) for c in MINIMAL_CELLS],
)
def test_numerical_gradients_float64(cell_name, with_lengths, helpers):
    """check_grads in float64 through zoo.RNN (params, inputs, initial carry): custom VJP and scans."""
    B, T, F, H = 3, 5, 3, 3
    with jax.enable_x64(True):
        cell = helpers.make_cell(cell_name, features=H, param_dtype=jnp.float64)
        rnn = zoo.RNN(cell, return_carry=True)
        x = helpers.randn((B, T, F), 70, dtype=jnp.float64)
        params = helpers.init_params(rnn, x, seed=71)
        assert all(p.dtype == jnp.float64 for p in jax.tree.leaves(params))
        carry0 = helpers.random_carry(cell, (B,), 72)
        lengths = jnp.array([T, 2, 0]) if with_lengths else None
        w = helpers.randn((B, T, H), 99, dtype=jnp.float64)

        @jax.jit
        def f(params, x, carry0):
            carry, ys = rnn.apply(params, x, initial_carry=carry0, seq_lengths=lengths)
            assert ys.dtype == jnp.float64
            # the final carry enters the loss too, so its cotangent path is checked
            return jnp.sum(ys * w) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(carry))

        modes = ["rev"] if cell_name in CUSTOM_VJP_CELLS else ["fwd", "rev"]
        check_grads(f, (params, x, carry0), order=1, modes=modes, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "cell_name, with_lengths",
    [(c, True) for c in PATH_CELLS] + [(c, False) for c in ["simple", "lstm", "gru", "mingru_lin_par"]],
)
def test_gradients_match_step_loop(cell_name, with_lengths, helpers):
    """float32 gradients of zoo.RNN equal autodiff through the step loop (params, x, initial_carry)."""
    B, T, F, H = 3, 5, 4, 5
    cell, rnn, params, x, carry0 = _setup(helpers, cell_name, B=B, T=T, F=F, H=H, seed=80)
    w = helpers.randn((B, T, H), 99)
    lengths = np.array([5, 3, 0]) if with_lengths else np.full(B, T)
    mask = jnp.asarray(np.arange(T)[None, :] < lengths[:, None])  # (B, T)
    seq_lengths = jnp.asarray(lengths) if with_lengths else None

    def loss_rnn(params, x, carry0):
        carry, ys = rnn.apply(params, x, initial_carry=carry0, seq_lengths=seq_lengths)
        return jnp.sum(ys * w) + sum(jnp.sum(c * c) for c in jax.tree.leaves(carry))

    def loss_loop(params, x, carry0):
        variables = {"params": params["params"]["cell"]}
        carry, total = carry0, 0.0
        for t in range(T):
            new, y = cell.apply(variables, carry, x[:, t])
            m = mask[:, t][:, None]
            carry = jax.tree.map(lambda n, o, m=m: jnp.where(m, n, o), new, carry)
            total = total + jnp.sum(jnp.where(m, y, 0.0) * w[:, t])
        return total + sum(jnp.sum(c * c) for c in jax.tree.leaves(carry))

    g_rnn = jax.jit(jax.grad(loss_rnn, argnums=(0, 1, 2)))(params, x, carry0)
    g_loop = jax.jit(jax.grad(loss_loop, argnums=(0, 1, 2)))(params, x, carry0)
    _close(g_rnn, g_loop, rtol=1e-4, atol=1e-5)
    # every parameter and carry leaf is connected to the loss
    for name, g in g_rnn[0]["params"]["cell"].items():
        assert np.any(np.asarray(g) != 0), name
    for g in jax.tree.leaves(g_rnn[2]):
        assert np.any(np.asarray(g) != 0)


@pytest.mark.parametrize("cell_name", CORE_CELLS)
def test_gradient_of_padding_is_zero(cell_name, helpers):
    """Padded inputs get exactly zero gradient; an empty sequence passes the carry gradient through."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, B=3, T=6, seed=85)
    lengths = jnp.array([4, 0, 6])

    @jax.jit
    def loss(x, carry0):
        carry, ys = rnn.apply(params, x, initial_carry=carry0, seq_lengths=lengths)
        return jnp.sum(ys**2) + sum(jnp.sum(c) for c in jax.tree.leaves(carry))

    gx, gc = jax.grad(loss, argnums=(0, 1))(x, carry0)
    assert np.all(np.asarray(gx[0, 4:]) == 0) and np.all(np.asarray(gx[1]) == 0)
    assert np.any(np.asarray(gx[0, :4]) != 0) and np.any(np.asarray(gx[2, 5]) != 0)
    for leaf in jax.tree.leaves(gc):
        np.testing.assert_array_equal(leaf[1], np.ones(5))  # d(sum carry)/d carry0 for the empty row


# ---------------------------------------------------------------------------
# transformations and layouts


@pytest.mark.parametrize("cell_name", ["lstm", "gru_reset_before"])
def test_jit_matches_eager(cell_name, helpers):
    """jax.jit(apply) gives the eager outputs and carry, with lengths."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=90)
    lengths = jnp.array([7, 0, 3, 5])
    f = lambda p, x, c, n: rnn.apply(p, x, initial_carry=c, seq_lengths=n)
    _close(jax.jit(f)(params, x, carry0, lengths), f(params, x, carry0, lengths))


@pytest.mark.parametrize("cell_name", LAYOUT_CELLS)
def test_vmap_matches_batching(cell_name, helpers):
    """vmap of apply over an extra leading axis equals one apply on the merged batch (with lengths)."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, B=6, T=7, seed=95)
    lengths = jnp.array([7, 0, 3, 5, 1, 6])
    split = lambda a: a.reshape((2, 3) + a.shape[1:])
    f = lambda x, c, n: rnn.apply(params, x, initial_carry=c, seq_lengths=n)
    out_v = jax.jit(jax.vmap(f))(split(x), jax.tree.map(split, carry0), split(lengths))
    out = helpers.apply(rnn, params, x, initial_carry=carry0, seq_lengths=lengths)
    _close(out_v, jax.tree.map(split, out))


@pytest.mark.parametrize("cell_name", ["lstm"])
def test_grad_under_jit_matches_eager_grad(cell_name, helpers):
    """jit(grad(loss)) equals eager grad(loss), and every parameter gets a finite, non-zero gradient."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=100)
    lengths = jnp.array([7, 2, 5, 4])

    def loss(p):
        return jnp.sum(rnn.apply(p, x, initial_carry=carry0, seq_lengths=lengths)[1] ** 2)

    g_eager = jax.grad(loss)(params)
    g_jit = jax.jit(jax.grad(loss))(params)
    _close(g_jit, g_eager)
    for g in jax.tree.leaves(g_jit):
        assert np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0)


@pytest.mark.parametrize("cell_name", LAYOUT_CELLS)
def test_arbitrary_batch_axes(cell_name, helpers):
    """Inputs (2, 3, T, F) with lengths (2, 3) equal the reshaped (6, T, F) batch; carries are (2, 3, H)."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, B=6, T=7, seed=95)
    lengths = jnp.array([7, 0, 3, 5, 1, 6])
    c6, y6 = helpers.apply(rnn, params, x, initial_carry=carry0, seq_lengths=lengths)
    split = lambda a: a.reshape((2, 3) + a.shape[1:])
    c23, y23 = helpers.apply(
        rnn, params, split(x), initial_carry=jax.tree.map(split, carry0), seq_lengths=split(lengths)
    )
    assert y23.shape == (2, 3, 7, 5)
    _close((c23, y23), jax.tree.map(split, (c6, y6)))


@pytest.mark.parametrize("cell_name", LAYOUT_CELLS)
def test_unbatched_input(cell_name, helpers):
    """Unbatched (T, F) inputs give the row of a batched run; default carry has leaves of shape (H,)."""
    _cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=120)
    c_b, y_b = helpers.apply(rnn, params, x, initial_carry=carry0)
    c_1, y_1 = helpers.apply(rnn, params, x[2], initial_carry=_rows(carry0, 2))
    assert y_1.shape == (7, 5)
    _close((c_1, y_1), _rows((c_b, y_b), 2))
    c_0, y_0 = helpers.apply(rnn, params, x[2])  # zero initial carry
    assert all(leaf.shape == (5,) for leaf in jax.tree.leaves(c_0))
    _close((c_0, y_0), helpers.apply(rnn, params, x[2], initial_carry=jax.tree.map(jnp.zeros_like, c_1)))


@pytest.mark.parametrize("cell_name", LAYOUT_CELLS)
def test_time_major_equals_batch_major(cell_name, helpers):
    """time_major=True on (T, B, F) equals the batch-major run on the transposed inputs (with lengths)."""
    cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=130)
    lengths = jnp.array([7, 0, 3, 5])
    c_b, y_b = helpers.apply(rnn, params, x, initial_carry=carry0, seq_lengths=lengths)
    c_t, y_t = helpers.apply(
        rnn, params, jnp.swapaxes(x, 0, 1), initial_carry=carry0, seq_lengths=lengths, time_major=True
    )
    assert y_t.shape == (7, 4, 5)
    _close((c_t, y_t), (c_b, jnp.swapaxes(y_b, 0, 1)))
    # the attribute works like the call argument
    tm = zoo.RNN(cell, return_carry=True, time_major=True)
    _close(
        helpers.apply(tm, params, jnp.swapaxes(x, 0, 1), initial_carry=carry0, seq_lengths=lengths),
        (c_t, y_t),
    )


@pytest.mark.parametrize("cell_name", ["lstm", "gru_reset_before"])
def test_unroll_does_not_change_results(cell_name, helpers):
    """unroll=3 (not dividing T=7) gives the unroll=1 outputs, carry and gradients (fwd and bwd loops)."""
    cell, rnn, params, x, carry0 = _setup(helpers, cell_name, seed=137)
    rnn3 = zoo.RNN(cell, return_carry=True, unroll=3)
    lengths = jnp.array([7, 0, 3, 5])

    def value_and_grad(rnn):
        def loss(params, carry0):
            carry, ys = rnn.apply(params, x, initial_carry=carry0, seq_lengths=lengths)
            return jnp.sum(ys**2) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry)), (carry, ys)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, carry0)

    _close(value_and_grad(rnn3), value_and_grad(rnn), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize("cell_name", CORE_CELLS)
def test_bfloat16_compute_close_to_float32(cell_name, helpers):
    """dtype=bfloat16 with float32 params: bfloat16 outputs within 0.05 of float32, carry kept in float32."""
    B, T, F, H = 4, 16, 8, 8
    cell32 = helpers.make_cell(cell_name, features=H)
    cell16 = helpers.make_cell(cell_name, features=H, dtype=jnp.bfloat16)
    x = helpers.randn((B, T, F), 140)
    params = helpers.init_params(zoo.RNN(cell32), x, seed=141)
    lengths = jnp.array([16, 9, 0, 12])
    c32, y32 = helpers.apply(zoo.RNN(cell32, return_carry=True), params, x, seq_lengths=lengths)
    c16, y16 = helpers.apply(zoo.RNN(cell16, return_carry=True), params, x, seq_lengths=lengths)
    assert y16.dtype == jnp.bfloat16
    assert all(c.dtype == jnp.float32 for c in jax.tree.leaves(c16))
    assert float(jnp.max(jnp.abs(y16.astype(jnp.float32) - y32))) < 0.05
    for a, b in zip(jax.tree.leaves(c16), jax.tree.leaves(c32)):
        assert float(jnp.max(jnp.abs(a - b))) < 0.05
    assert np.all(np.asarray(y16[2]) == 0)  # padding still exactly zero
    assert float(jnp.max(jnp.abs(y32))) > 0.1  # not trivially small outputs


def test_bfloat16_inputs_promote_to_float32(helpers):
    """dtype=None promotes: bfloat16 inputs with float32 params compute and return float32."""
    cell = helpers.make_cell("lstm", features=5)
    rnn = zoo.RNN(cell)
    x = helpers.randn((2, 5, 4), 145).astype(jnp.bfloat16)
    params = helpers.init_params(rnn, x, seed=146)
    y = helpers.apply(rnn, params, x)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, helpers.apply(rnn, params, x.astype(jnp.float32)), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# RNNStack


def test_stack_equals_rnns_applied_by_hand(helpers):
    """RNNStack(num_layers=2) equals two RNNs chained by hand with the same params (outputs and carries)."""
    cell = helpers.make_cell("lstm", features=5)
    stack = zoo.RNNStack(cell, num_layers=2, dropout_rate=0.5)
    x = helpers.randn((3, 7, 4), 150)
    params = helpers.init_params(stack, x, seed=151)
    assert set(params["params"]) == {"layer_0", "layer_1"}
    lengths = jnp.array([7, 0, 4])
    carries0 = [helpers.random_carry(cell, (3,), 152), helpers.random_carry(cell, (3,), 154)]
    carries, ys = helpers.apply(
        stack, params, x, initial_carry=carries0, seq_lengths=lengths, return_carry=True
    )

    rnn = zoo.RNN(cell, return_carry=True)
    c0, h = helpers.apply(
        rnn, {"params": params["params"]["layer_0"]}, x, initial_carry=carries0[0], seq_lengths=lengths
    )
    c1, y = helpers.apply(
        rnn, {"params": params["params"]["layer_1"]}, h, initial_carry=carries0[1], seq_lengths=lengths
    )
    _close(ys, y)
    _close(carries, [c0, c1])


def test_stack_dropout_only_when_not_deterministic(helpers):
    """Dropout between layers acts only with deterministic=False, differently per rng; none after the last."""
    cell = helpers.make_cell("gru", features=5)
    stack = zoo.RNNStack(cell, num_layers=2, dropout_rate=0.5)
    x = helpers.randn((3, 7, 4), 160)
    params = helpers.init_params(stack, x, seed=161)
    y_det = helpers.apply(stack, params, x, deterministic=True)
    y_no_dropout = helpers.apply(zoo.RNNStack(cell, num_layers=2), params, x)
    np.testing.assert_array_equal(y_det, y_no_dropout)
    y_a = helpers.apply(stack, params, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    y_b = helpers.apply(stack, params, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(y_a, y_det)
    assert not np.allclose(y_a, y_b)
    one = zoo.RNNStack(cell, num_layers=1, dropout_rate=0.5)
    p1 = {"params": {"layer_0": params["params"]["layer_0"]}}
    np.testing.assert_array_equal(
        helpers.apply(one, p1, x, deterministic=False, rngs={"dropout": jax.random.key(1)}),
        helpers.apply(one, p1, x),
    )


def test_bidirectional_stack(helpers):
    """Bidirectional RNNStack: width 2*features, layer 1 reads 2*features, equals Bidirectionals by hand."""
    cell = helpers.make_cell("simple", features=5)
    stack = zoo.RNNStack(cell, num_layers=2, bidirectional=True)
    x = helpers.randn((3, 7, 4), 170)
    params = helpers.init_params(stack, x, seed=171)
    assert params["params"]["layer_1_forward"]["cell"]["input_kernel"].shape == (10, 5)
    lengths = jnp.array([7, 3, 0])
    carries, ys = helpers.apply(stack, params, x, seq_lengths=lengths, return_carry=True)
    assert ys.shape == (3, 7, 10)

    bi = zoo.Bidirectional(zoo.RNN(cell), zoo.RNN(cell.clone()), return_carry=True)
    h, expected_carries = x, []
    for i in range(2):
        p = {
            "params": {
                "forward_rnn": params["params"][f"layer_{i}_forward"],
                "backward_rnn": params["params"][f"layer_{i}_backward"],
            }
        }
        c, h = helpers.apply(bi, p, h, seq_lengths=lengths)
        expected_carries.append(c)
    _close(ys, h)
    _close(carries, expected_carries)
