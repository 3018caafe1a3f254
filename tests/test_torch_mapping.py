"""PyTorch weights map onto zoo's cells exactly, through zoo.interop.from_torch_rnn (the table is in
zoo/interop/torch_rnn.py): torch.nn.RNN, nn.LSTM and nn.GRU (batch_first) give the same outputs and final
states. Live against torch (skipped without it); tests/test_torch_rnn.py checks committed fixtures always."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from zoo.interop import from_torch_rnn, torch_rnn_spec

torch = pytest.importorskip("torch")

B, T, F, H = 3, 7, 4, 5
ATOL = 1e-5

# ---------------------------------------------------------------------------
# helpers


def _cell_params(module, kind=None, layer=0, suffix="", cell=False):
    """zoo cell parameters of layer ``layer`` (``suffix='_reverse'``: the backward direction) of a torch
    recurrent module, or of a torch ``*Cell`` (``cell=True``), through the library's mapping
    (zoo.interop.from_torch_rnn; the table is in zoo/interop/torch_rnn.py)."""
    _, params = from_torch_rnn(module)
    if cell:
        return {"cell": jax.tree.map(jnp.asarray, params)}
    spec = torch_rnn_spec(params)
    for part in spec.zoo_paths()[(layer, suffix)][:-1]:
        params = params[part]
    return jax.tree.map(jnp.asarray, params)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    h0 = 0.5 * rng.standard_normal((1, B, H)).astype(np.float32)
    c0 = 0.5 * rng.standard_normal((1, B, H)).astype(np.float32)
    return x, h0, c0


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=ATOL)


def _torch_module(kind, **kwargs):
    torch.manual_seed(0)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    return cls(input_size=F, hidden_size=H, batch_first=True, **kwargs)


# ---------------------------------------------------------------------------
# single layer


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_simple_rnn_matches_torch(nonlinearity):
    """torch.nn.RNN (tanh or relu) == zoo.SimpleRNNCell with the mapped weights: outputs and h_n."""
    m = _torch_module("rnn", nonlinearity=nonlinearity)
    x, h0, _ = _inputs(1)
    with torch.no_grad():
        out, h_n = m(torch.from_numpy(x), torch.from_numpy(h0))
    act = jax.nn.relu if nonlinearity == "relu" else jnp.tanh
    rnn = zoo.RNN(zoo.SimpleRNNCell(features=H, activation_fn=act), return_carry=True)
    carry, ys = rnn.apply(
        {"params": _cell_params(m, "rnn")}, jnp.asarray(x), initial_carry=jnp.asarray(h0[0])
    )
    _close(ys, out.numpy())
    _close(carry, h_n.numpy()[0])


def test_lstm_matches_torch():
    """torch.nn.LSTM == zoo.LSTMCell (gates i, f, g, o): outputs, h_n and c_n (zoo carry is (c, h))."""
    m = _torch_module("lstm")
    x, h0, c0 = _inputs(2)
    with torch.no_grad():
        out, (h_n, c_n) = m(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    rnn = zoo.RNN(zoo.LSTMCell(features=H), return_carry=True)
    (c, h), ys = rnn.apply(
        {"params": _cell_params(m, "lstm")},
        jnp.asarray(x),
        initial_carry=(jnp.asarray(c0[0]), jnp.asarray(h0[0])),
    )
    _close(ys, out.numpy())
    _close(h, h_n.numpy()[0])
    _close(c, c_n.numpy()[0])


def test_gru_reset_after_matches_torch():
    """torch.nn.GRU == zoo.GRUCell(reset_after=True) (gates r, z, n; b_hn inside the reset product)."""
    m = _torch_module("gru")
    x, h0, _ = _inputs(3)
    with torch.no_grad():
        out, h_n = m(torch.from_numpy(x), torch.from_numpy(h0))
    rnn = zoo.RNN(zoo.GRUCell(features=H, reset_after=True), return_carry=True)
    carry, ys = rnn.apply(
        {"params": _cell_params(m, "gru")}, jnp.asarray(x), initial_carry=jnp.asarray(h0[0])
    )
    _close(ys, out.numpy())
    _close(carry, h_n.numpy()[0])


def test_gru_bias_mapping_matters():
    """The GRU mapping is not trivially met: folding b_hn into the input bias instead gives other outputs."""
    m = _torch_module("gru")
    x, h0, _ = _inputs(3)
    with torch.no_grad():
        out, _ = m(torch.from_numpy(x), torch.from_numpy(h0))
    p = _cell_params(m, "gru")
    wrong = {"cell": dict(p["cell"])}
    wrong["cell"]["bias"] = p["cell"]["bias"].at[2 * H :].add(p["cell"]["recurrent_bias"])
    wrong["cell"]["recurrent_bias"] = jnp.zeros(H)
    ys = zoo.RNN(zoo.GRUCell(features=H)).apply(
        {"params": wrong}, jnp.asarray(x), initial_carry=jnp.asarray(h0[0])
    )
    assert np.max(np.abs(np.asarray(ys) - out.numpy())) > 1e-3


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_single_step_matches_torch_cell(kind):
    """One zoo cell step == torch.nn.RNNCell / LSTMCell / GRUCell with the same weights."""
    torch.manual_seed(1)
    tcls = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind]
    m = tcls(F, H)
    x, h0, c0 = _inputs(4)
    xt, h, c = x[:, 0], h0[0], c0[0]
    params = _cell_params(m, kind, cell=True)
    with torch.no_grad():
        if kind == "lstm":
            th, tc = m(torch.from_numpy(xt), (torch.from_numpy(h), torch.from_numpy(c)))
        else:
            th = m(torch.from_numpy(xt), torch.from_numpy(h))
    cell = {"rnn": zoo.SimpleRNNCell, "lstm": zoo.LSTMCell, "gru": zoo.GRUCell}[kind](features=H)
    carry = (jnp.asarray(c), jnp.asarray(h)) if kind == "lstm" else jnp.asarray(h)
    new, y = cell.apply({"params": params["cell"]}, carry, jnp.asarray(xt))
    _close(y, th.numpy())
    if kind == "lstm":
        _close(new[0], tc.numpy())


# ---------------------------------------------------------------------------
# padding, bidirectional, stacks


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_packed_sequences_match_seq_lengths(kind):
    """torch packed sequences == zoo seq_lengths: outputs (zero padding) and states at the last valid step."""
    m = _torch_module(kind)
    x, h0, c0 = _inputs(5)
    lengths = np.array([7, 2, 5])
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else torch.from_numpy(h0)
    with torch.no_grad():
        out, state = m(packed, hx)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    cell = {"rnn": zoo.SimpleRNNCell, "lstm": zoo.LSTMCell, "gru": zoo.GRUCell}[kind](features=H)
    carry0 = (jnp.asarray(c0[0]), jnp.asarray(h0[0])) if kind == "lstm" else jnp.asarray(h0[0])
    carry, ys = zoo.RNN(cell, return_carry=True).apply(
        {"params": _cell_params(m, kind)},
        jnp.asarray(x),
        initial_carry=carry0,
        seq_lengths=jnp.asarray(lengths),
    )
    _close(ys, out.numpy())
    if kind == "lstm":
        _close(carry[1], state[0].numpy()[0])
        _close(carry[0], state[1].numpy()[0])
    else:
        _close(carry, state.numpy()[0])


def test_bidirectional_lstm_matches_torch():
    """torch.nn.LSTM(bidirectional=True), packed sequences == zoo.Bidirectional: outputs and final states."""
    m = _torch_module("lstm", bidirectional=True)
    x, _, _ = _inputs(6)
    lengths = np.array([4, 7, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        out, (h_n, c_n) = m(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    bi = zoo.Bidirectional(zoo.RNN(zoo.LSTMCell(H)), zoo.RNN(zoo.LSTMCell(H)), return_carry=True)
    params = {
        "forward_rnn": _cell_params(m, "lstm"),
        "backward_rnn": _cell_params(m, "lstm", suffix="_reverse"),
    }
    ((c_f, h_f), (c_b, h_b)), ys = bi.apply(
        {"params": params}, jnp.asarray(x), seq_lengths=jnp.asarray(lengths)
    )
    _close(ys, out.numpy())
    _close(h_f, h_n.numpy()[0])
    _close(c_f, c_n.numpy()[0])
    _close(h_b, h_n.numpy()[1])
    _close(c_b, c_n.numpy()[1])


def test_two_layer_gru_matches_rnn_stack():
    """torch.nn.GRU(num_layers=2) == zoo.RNNStack(GRUCell, num_layers=2): outputs and per-layer h_n."""
    m = _torch_module("gru", num_layers=2)
    x, _, _ = _inputs(7)
    with torch.no_grad():
        out, h_n = m(torch.from_numpy(x))
    stack = zoo.RNNStack(zoo.GRUCell(H), num_layers=2)
    params = {f"layer_{i}": _cell_params(m, "gru", layer=i) for i in range(2)}
    carries, ys = stack.apply({"params": params}, jnp.asarray(x), return_carry=True)
    _close(ys, out.numpy())
    for i in range(2):
        _close(carries[i], h_n.numpy()[i])
