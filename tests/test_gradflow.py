"""zoo.experiments.gradflow: lag gradient norms against a closed form and an independent Jacobian; the CLI."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from zoo.experiments import gradflow


def orthogonal(n, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def rnn_variables(input_kernel, recurrent_kernel, bias):
    return {"params": {"cell": {"input_kernel": input_kernel, "recurrent_kernel": recurrent_kernel, "bias": bias}}}


@pytest.mark.parametrize("rho", [0.7, 1.0, 1.3])
def test_linear_rnn_norm_at_lag_k_is_rho_to_the_k(rho):
    """h_t = h_{t-1} (rho Q) + x_t with Q orthogonal and a unit readout: ||dL/dx_{T-k}|| = rho^k exactly."""
    h, t, b = 6, 20, 3
    rnn = zoo.RNN(zoo.SimpleRNNCell(features=h, activation_fn=gradflow.linear))
    variables = rnn_variables(np.eye(h, dtype=np.float32), (rho * orthogonal(h, 0)).astype(np.float32),
                              np.zeros(h, np.float32))
    x = np.random.default_rng(1).standard_normal((b, t, h)).astype(np.float32)  # (B, T, D)
    norms = np.asarray(gradflow.rnn_lag_norms(rnn, variables, x))  # jitted
    assert norms.shape == (t,) and norms.dtype == np.float32
    np.testing.assert_allclose(norms, rho ** np.arange(t), rtol=2e-5)
    stats = gradflow.decay_stats(norms)
    assert stats["per_step"] == pytest.approx(rho, rel=1e-4)
    assert stats["decades"] == pytest.approx((t - 1) * np.log10(rho), abs=1e-4)


@pytest.mark.parametrize("quadratic", [False, True])
def test_tanh_rnn_matches_forward_mode_jacobian_of_a_hand_written_loop(quadratic):
    """zoo's RNN (custom-VJP kernel, reverse mode) against jacfwd of the Elman equations, float64."""
    h, d, t, b = 4, 3, 7, 2
    rng = np.random.default_rng(2)
    u, w = rng.standard_normal((d, h)), rng.standard_normal((h, h))
    bias = 0.3 * rng.standard_normal(h)
    x = rng.standard_normal((b, t, d))
    with jax.enable_x64(True):
        rnn = zoo.RNN(zoo.SimpleRNNCell(features=h, param_dtype=jnp.float64))
        r = gradflow.readout_vector(h, jnp.float64)
        loss = (lambda y: jnp.sum(y**2, axis=-1)) if quadratic else None

        def row_loss(xb):  # (T, D) -> scalar: the Elman RNN written out step by step
            state = jnp.zeros(h)
            for s in range(t):
                state = jnp.tanh(xb[s] @ u + bias + state @ w)
            return jnp.sum(state**2) if quadratic else state @ r

        jac = jax.jit(jax.jacfwd(row_loss))  # one program for both rows (eager: every op compiles on its own)
        grads = np.stack([np.asarray(jac(jnp.asarray(x[i]))) for i in range(b)])  # (B, T, D)
        want = np.linalg.norm(grads, axis=-1).mean(axis=0)[::-1]  # (T,) by lag
        got = jax.jit(lambda p, x: gradflow.lag_gradient_norms(rnn.apply, p, x, loss))(
            rnn_variables(u, w, bias), jnp.asarray(x)
        )
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)
        assert want[-1] < want[0]  # a real curve, not a constant


def test_transformer_curve_is_flat_where_a_contractive_rnn_decays():
    """Attention reads every earlier input directly: over k = 1..T-1 the Transformer's norms stay within one
    decade, while the lag-1 Jacobian product of a contractive linear RNN (rho = 0.7) loses 0.7^30 ~ 4.6 decades."""
    t, d, v = 32, 16, 20
    ids = np.random.default_rng(3).integers(0, v, (4, t + 1))
    model = gradflow.CharLM("transformer", v, d, t)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), ids[:1, :t]))  # eager init took ~5 s
    norms = np.asarray(gradflow.lm_lag_norms(model, params, ids[:, :t], ids[:, t]))
    assert norms.shape == (t,) and np.all(norms > 0)
    assert norms[1:].min() / norms[1:].max() > 0.1
    assert abs(np.log10(gradflow.decay_stats(norms)["per_step"])) * (t - 2) < 1

    rnn = zoo.RNN(zoo.SimpleRNNCell(features=d, activation_fn=gradflow.linear))
    variables = rnn_variables(np.eye(d, dtype=np.float32), (0.7 * orthogonal(d, 1)).astype(np.float32),
                              np.zeros(d, np.float32))
    rnn_norms = np.asarray(gradflow.rnn_lag_norms(rnn, variables, np.ones((2, t, d), np.float32)))
    assert rnn_norms[1:].min() / rnn_norms[1:].max() < 1e-4


def test_spectral_sweep_linear_rnn_decays_below_one_and_grows_above():
    sweep = gradflow.spectral_sweep((0.5, 1.5), features=8, length=40, batch_size=2)
    lin = {rho: gradflow.decay_stats(c) for rho, c in sweep["linear"].items()}
    assert lin["0.5"]["per_step"] == pytest.approx(0.5, rel=0.1)
    assert lin["1.5"]["per_step"] == pytest.approx(1.5, rel=0.1)
    assert sweep["linear"]["0.5"][-1] > 0  # float64: 0.5^39 does not underflow
    assert sweep["tanh"]["1.5"][-1] < sweep["linear"]["1.5"][-1]  # saturation caps the explosion


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, D\)"):
        gradflow.lag_gradient_norms(lambda p, x: x, None, jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="loss must return per-example losses"):
        gradflow.lag_gradient_norms(lambda p, x: x, None, jnp.zeros((2, 3, 4)), loss=lambda y: y)


def test_main_quick_writes_json_and_png(tmp_path, capsys):
    assert gradflow.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| SimpleRNN |" in out and "| Transformer |" in out and "decades" in out and "| 1.5 |" in out
    result = json.loads((tmp_path / "gradflow.json").read_text())
    t = result["resolved"]["length"]
    assert t == 24 and result["lags"] == list(range(t))
    for phase in ("untrained", "trained"):
        assert set(result[phase]) == set(gradflow.MODELS)
        for curve in result[phase].values():
            assert len(curve) == t and all(g > 0 for g in curve)
        assert set(result["summary"][phase]) == set(gradflow.MODELS)
    assert result["untrained"]["lstm"] != result["trained"]["lstm"]
    for kind, tr in result["training"].items():
        assert tr["val_loss_after"] < tr["val_loss_before"], kind
    assert set(result["sweep"]) == {"linear", "tanh"}
    assert list(result["sweep"]["linear"]) == ["0.5", "0.9", "1", "1.1", "1.5"]
    assert result["summary"]["sweep"]["linear"]["0.5"]["decades"] < 0 < result["summary"]["sweep"]["linear"]["1.5"][
        "decades"]
    assert (tmp_path / "gradflow.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, flag",
    [(["--length", "1"], "--length"), (["--train-steps", "0"], "--train-steps"), (["--features", "6"], "--features"),
     (["--radii", "1.0", "0"], "--radii")],
)
def test_bad_arguments_give_a_clear_error(tmp_path, capsys, args, flag):
    assert gradflow.main([*args, "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {flag}=" in err and "expected" in err
    assert not (tmp_path / "gradflow.json").exists()
