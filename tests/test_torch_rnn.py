"""zoo.interop.from_torch_rnn / to_torch_rnn: PyTorch nn.RNN, nn.LSTM, nn.GRU (and *Cell) weights in and out.

Always (no torch needed): the fixtures in tests/fixtures/torch_rnn (made by
make_fixtures.py with torch, version in manifest.json; packed sequences of
unequal lengths, given initial states, 1 to 3 layers, bidirectional or not,
with and without biases) give torch's outputs and final states within 1e-5;
zoo -> torch -> zoo is bit-identical; the exported biases follow the
documented rule; bad inputs fail with errors that name what is wrong. With
torch installed, the exported weights are loaded back into a fresh torch
module, which gives the fixture's outputs again (torch -> zoo -> torch).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from zoo.interop import (
    TorchRNNSpec,
    carry_from_torch,
    carry_to_torch,
    from_torch_rnn,
    to_torch_rnn,
    torch_rnn_spec,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "torch_rnn"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
NAMES = list(MANIFEST["fixtures"])
ATOL = 1e-5


def load(name: str) -> dict:
    with np.load(FIXTURES / f"{name}.npz") as f:
        ref = dict(f)
    ref["state"] = {k.removeprefix("state/"): v for k, v in ref.items() if k.startswith("state/")}
    ref["kwargs"] = MANIFEST["fixtures"][name]["kwargs"]
    ref["lstm"] = MANIFEST["fixtures"][name]["class"].startswith("LSTM")
    return ref


def hx_of(ref: dict):
    return (ref["h0"], ref["c0"]) if ref["lstm"] else ref["h0"]


def run_zoo(module, params, ref: dict):
    """zoo's (outputs, torch-layout final state) on the fixture's inputs and initial state."""
    carry0 = carry_from_torch(hx_of(ref), module)
    variables = {"params": jax.tree.map(jnp.asarray, params)}
    if "lengths" not in ref:  # a cell: one step
        carry, y = jax.jit(module.apply)(variables, carry0, jnp.asarray(ref["x"]))
    else:
        carry, y = jax.jit(lambda v, x, c, n: module.apply(v, x, initial_carry=c, seq_lengths=n, return_carry=True))(
            variables, jnp.asarray(ref["x"]), carry0, jnp.asarray(ref["lengths"]))
    return np.asarray(y), carry_to_torch(carry, module)


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_outputs_and_final_states_match_torch(name):
    ref = load(name)
    module, params = from_torch_rnn(ref["state"], nonlinearity=ref["kwargs"].get("nonlinearity"))
    spec = torch_rnn_spec(params, module, bias=ref["kwargs"].get("bias", True))
    assert spec.num_layers == ref["kwargs"].get("num_layers", 1)
    assert spec.bidirectional == ref["kwargs"].get("bidirectional", False)
    assert spec.nonlinearity == ref["kwargs"].get("nonlinearity", "tanh")
    y, state = run_zoo(module, params, ref)
    close(y, ref["out"])  # zero past each length, as pad_packed_sequence pads
    if ref["lstm"]:
        close(state[0], ref["h_n"])
        close(state[1], ref["c_n"])
    else:
        close(state, ref["h_n"])


@pytest.mark.parametrize("name", NAMES)
def test_zoo_torch_zoo_is_bit_identical_and_biases_follow_the_rule(name):
    ref = load(name)
    bias = ref["kwargs"].get("bias", True)
    module, params = from_torch_rnn(ref["state"], nonlinearity=ref["kwargs"].get("nonlinearity"))
    state = to_torch_rnn(params, module, bias=bias)
    assert set(state) == set(ref["state"])
    _, again = from_torch_rnn(state)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, again))
    gru = "gru" in name
    for key, value in state.items():
        assert value.dtype == np.float32 and value.shape == ref["state"][key].shape
        if key.startswith("weight"):
            np.testing.assert_array_equal(value, ref["state"][key])
        elif key.startswith("bias_ih"):  # the sum of torch's two biases (GRU: but b_hn)
            b_ih, b_hh = ref["state"][key], ref["state"][key.replace("_ih", "_hh")]
            hidden = ref["h0"].shape[-1]
            want = b_ih + (np.concatenate([b_hh[: 2 * hidden], np.zeros(hidden, np.float32)]) if gru else b_hh)
            np.testing.assert_array_equal(value, want)
        else:  # bias_hh: zeros, but GRU's b_hn
            hidden = ref["h0"].shape[-1]
            np.testing.assert_array_equal(value[: 2 * hidden] if gru else value, 0)
            if gru:
                np.testing.assert_array_equal(value[2 * hidden :], ref["state"][key][2 * hidden :])


@pytest.mark.parametrize("name", ["lstm_2layer_bi", "gru_3layer_bi", "rnn_relu_2layer_bi_nobias", "gru_cell"])
def test_torch_zoo_torch_gives_the_same_outputs(name):
    """The exported state dict loads into a fresh torch module of torch_rnn_spec's shape: torch's outputs again."""
    torch = pytest.importorskip("torch")
    ref = load(name)
    module, params = from_torch_rnn(ref["state"], nonlinearity=ref["kwargs"].get("nonlinearity"))
    bias = ref["kwargs"].get("bias", True)
    spec = torch_rnn_spec(params, module, bias=bias)
    m = spec.torch_module() if spec.cell else spec.torch_module(batch_first=True)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_rnn(params, module, bias=bias).items()})
    hx = tuple(map(torch.from_numpy, hx_of(ref))) if ref["lstm"] else torch.from_numpy(ref["h0"])
    with torch.no_grad():
        if spec.cell:
            out = m(torch.from_numpy(ref["x"]), hx)
            state = out
            out = out[0] if ref["lstm"] else out  # a cell returns its new state, h first
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                torch.from_numpy(ref["x"]), torch.from_numpy(ref["lengths"].astype(np.int64)), batch_first=True,
                enforce_sorted=False)
            out, state = m(packed, hx)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ref["x"].shape[1])
    close(out.numpy(), ref["out"])
    if ref["lstm"]:
        close(state[0].numpy(), ref["h_n"])
        close(state[1].numpy(), ref["c_n"])
    else:
        close(state.numpy(), ref["h_n"])


def test_module_source_reads_mode_nonlinearity_and_dropout():
    torch = pytest.importorskip("torch")
    m = torch.nn.RNN(3, 4, num_layers=2, nonlinearity="relu", dropout=0.25)
    module, _ = from_torch_rnn(m)
    assert isinstance(module, zoo.RNNStack) and module.dropout_rate == 0.25
    assert module.cell.activation_fn is jax.nn.relu
    with pytest.raises(ValueError, match="proj_size=2"):
        from_torch_rnn(torch.nn.LSTM(3, 4, proj_size=2))


def test_prefix_reads_one_module_of_a_larger_state_dict():
    ref = load("gru")
    big = {f"encoder.rnn.{k}": v for k, v in ref["state"].items()}
    big["decoder.weight"] = np.zeros((2, 2), np.float32)
    module, params = from_torch_rnn(big, prefix="encoder.rnn.")
    assert isinstance(module, zoo.RNN) and isinstance(module.cell, zoo.GRUCell)
    assert set(to_torch_rnn(params, prefix="encoder.rnn.")) == {f"encoder.rnn.{k}" for k in ref["state"]}
    with pytest.raises(ValueError, match=r"not a torch RNN's.*prefix="):
        from_torch_rnn(big)
    with pytest.raises(ValueError, match=r"no keys start with the prefix; found \['encoder.rnn.weight_ih_l0'\]"):
        from_torch_rnn(big, prefix="rnn.")


def test_state_dict_errors_name_the_tensor():
    state = load("lstm_2layer_bi")["state"]
    with pytest.raises(ValueError, match="mode='gru' has 3 gates, but weight_hh has 4"):
        from_torch_rnn(state, mode="gru")
    from_torch_rnn(state, mode="LSTM")  # torch's names work too
    missing = {k: v for k, v in state.items() if k != "bias_hh_l1_reverse"}
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l1_reverse'\]"):
        from_torch_rnn(missing)
    bad = {**state, "weight_ih_l1": np.zeros((20, 7), np.float32)}
    with pytest.raises(ValueError, match=r"weight_ih_l1 has shape \(20, 7\), expected \(20, 10\)"):
        from_torch_rnn(bad)
    with pytest.raises(ValueError, match="proj_size"):
        from_torch_rnn({**state, "weight_hr_l0": np.zeros((3, 5), np.float32)})


def test_export_refuses_what_torch_cannot_hold():
    x = jnp.zeros((1, 2, 3))

    def params_of(module):  # shapes from init, values all ones (so every bias is non-zero)
        shapes = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
        return jax.tree.map(lambda s: np.ones(s.shape, s.dtype), shapes)

    for cell, match in [(zoo.MinGRUCell(4), "minGRU or minLSTM"), (zoo.GRUCell(4, reset_after=False), "reset_after=False")]:
        with pytest.raises(ValueError, match=match):
            to_torch_rnn(params_of(zoo.RNN(cell)))
    gelu = zoo.RNN(zoo.SimpleRNNCell(4, activation_fn=jax.nn.gelu))
    with pytest.raises(ValueError, match="tanh .* and ReLU"):
        to_torch_rnn(params_of(gelu), gelu)
    lstm = zoo.RNN(zoo.LSTMCell(4))
    with pytest.raises(ValueError, match="bias=False, but cell/bias is not zero"):
        to_torch_rnn(params_of(lstm), bias=False)
    with pytest.raises(ValueError, match="are not those of a zoo cell"):
        to_torch_rnn({"dense": {"kernel": np.zeros((2, 2))}})


def test_carry_conversion_checks_the_layout():
    module, _ = from_torch_rnn(load("lstm_2layer_bi")["state"])
    h = np.zeros((4, 3, 5), np.float32)
    carry = carry_from_torch((h, h + 1), module)
    assert len(carry) == 2 and len(carry[0]) == 2  # layers, then (forward, backward), each (c, h)
    np.testing.assert_array_equal(carry[1][1][0], h[3] + 1)  # layer 1 backward c = c_0[2 * 1 + 1]
    with pytest.raises(ValueError, match=r"\(h_0, c_0\)"):
        carry_from_torch(h, module)
    with pytest.raises(ValueError, match="num_layers \\* num_directions=4"):
        carry_from_torch((h[:2], h[:2]), module)


def test_spec_round_trips_through_zoo_module():
    spec = TorchRNNSpec("gru", 3, 4, num_layers=2, bidirectional=True)
    module = spec.zoo_module()
    params = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 2, 3)))["params"]
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), params)
    assert torch_rnn_spec(params, module) == spec
    assert {k: v.shape for k, v in to_torch_rnn(params).items()} == spec.torch_shapes()
