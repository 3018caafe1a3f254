"""Vanishing and exploding gradients, measured: how far back can a loss at step T reach?

    zoo gradflow --out runs/gradflow                 # T = 128: SimpleRNN, LSTM, GRU, Transformer; ~2-3 min, 2 cores
    zoo gradflow --quick --out /tmp/gradflow         # tiny: seconds

**Why gradients vanish or explode in an RNN.** An Elman RNN computes
``h_t = tanh(a_t)`` with ``a_t = W h_{t-1} + U x_t + b`` (column vectors;
zoo's kernels are the transposes). A loss ``L_T`` read from the last state
reaches the input ``k`` steps back through a product of ``k`` Jacobians::

    dL_T/dx_{T-k} = U^T D_{T-k} W^T D_{T-k+1} W^T ... D_T dL_T/dh_T,     D_s = diag(tanh'(a_s))

Every step multiplies by ``W^T`` and by the saturation factors
``tanh'(a) = 1 - h^2`` in ``(0, 1]``. Without the nonlinearity
(``D_s = I``) the product is ``(W^T)^k``, whose size grows like
``rho(W)^k``, with ``rho`` the spectral radius (largest eigenvalue modulus;
Gelfand: ``||W^k||^(1/k) -> rho``). So ``rho < 1`` makes the signal decay
geometrically (about ``k log10(1/rho)`` decades at lag k) and ``rho > 1``
makes it grow; only ``rho = 1`` (an orthogonal W, for instance) keeps it
level (Bengio et al. 1994; Pascanu, Mikolov and Bengio 2013: the largest
singular value below 1 is sufficient for vanishing, above 1 necessary for
exploding). With tanh the factors ``1 - h^2`` shrink each step further: a
large ``W`` drives the units into saturation, where ``tanh' ~ 0``, so the
nonlinearity caps the explosion that the linear RNN shows, at the price of
vanishing gradients through the saturated units. Exploding gradients are
the easy half (clip the global norm); vanishing ones hide long-range
dependencies from training altogether.

**Gates.** The LSTM carries a cell ``c_t = f_t * c_{t-1} + i_t * g_t``: along
that path ``dc_t/dc_{t-1} = diag(f_t)`` (plus terms through the gates), with
no ``W`` and no ``tanh'`` in it, Hochreiter's constant error carousel. The
gradient still decays, at the rate of the forget gates, but those are
learned per unit and per step, and a forget bias of 1 starts them at
``sigmoid(1) ~ 0.73``. The GRU's ``h_t = n_t + z_t * (h_{t-1} - n_t)`` has
the same additive path through ``diag(z_t)``.

**Attention** has no product over time at all: the output at T reads
``x_{T-k}`` directly through the attention weight ``alpha_{T, T-k}`` (and
the residual stream), one or two layers deep whatever k is. Its gradient
curve against k is flat up to the attention pattern: no geometric decay,
paid for with O(T^2) work and no carried state.

**What is measured.** :func:`lag_gradient_norms` takes any sequence model
``apply(params, x) -> y`` on continuous inputs ``x`` (B, T, D) and a loss of
the last step's output ``y[:, -1]``, and returns ``||dL_T/dx_{T-k}||`` for
``k = 0..T-1``, averaged over the batch (one backward pass; pure, jit-able).
:func:`run` applies it to

* zoo's SimpleRNN, LSTM and GRU (``zoo.RNN`` over the cells) and a small
  pre-LN causal Transformer (``zoo.Decoder``), each a character-level LM
  (:class:`CharLM`) whose inputs are the token embeddings, at
  initialisation and after ``--train-steps`` of Adam on the built-in corpus;
  the loss is the next-token cross-entropy at step T, the inputs held-out
  windows;
* a spectral-radius sweep: a linear RNN ``h_t = W h_{t-1} + U x_t`` and the
  tanh SimpleRNN, with one random Gaussian ``W`` rescaled to each spectral
  radius ``rho``, random inputs and a fixed random unit readout, in float64
  (float32 flushes the ~1e-39 of ``0.5^127`` to zero).

What the default run shows (T = 128, width 64, 300 steps; see the printed
table): at initialisation the SimpleRNN barely decays (its orthogonal W has
rho = 1 and tiny embeddings keep tanh linear), while the LSTM and the GRU
shrink by factors of ~0.98 and ~0.75 per step (1.6 and 16 decades over the
sequence: the spectral radii of their state updates linearised at the
initial gates, f ~ 0.73 with forget bias 1 for the LSTM, z ~ 0.5); after
training all three recurrent LMs decay much faster (SimpleRNN ~16 decades
over the sequence, GRU ~12, LSTM ~5), while the Transformer's curve beyond
k = 0 stays flat at initialisation and falls by only about one decade from
k = 1 to k = 127 after training (a learned preference for recent inputs). In the sweep the linear RNN
follows rho^k to three digits; the tanh RNN, driven by unit-variance inputs,
decays at every rho: saturation does not just cap the explosion at
rho = 1.5, it turns it into vanishing.

Each curve is summarised by ``decades``, ``log10(norm[k=T-1] / norm[k=0])``
(how far the signal falls over the sequence) and ``per_step``, the factor
per step of a geometric fit over ``k = 1..T-1``. Results:
``OUT/gradflow.json`` (every curve) and ``OUT/gradflow.png``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import shape_str
from zoo.harness import results
from zoo.harness.main import Experiment
from zoo.harness.main import main as harness_main
from zoo.layers import CELLS, RNN, Decoder, Embed, LearnedPositionEmbedding, TransformerConfig
from zoo.train import TrainConfig, fit

Array = jax.Array

__all__ = [
    "MODELS",
    "GradflowConfig",
    "lag_gradient_norms",
    "readout_vector",
    "linear",
    "spectral_radius",
    "scaled_matrix",
    "CharLM",
    "lm_lag_norms",
    "rnn_lag_norms",
    "train_char_lm",
    "spectral_sweep",
    "decay_stats",
    "run",
    "render",
    "plots",
    "main",
]

MODELS = ("rnn", "lstm", "gru", "transformer")
LABELS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU", "transformer": "Transformer"}
NUM_HEADS = 4  # of the Transformer
NUM_LAYERS = 2  # of the Transformer; the RNNs have one recurrent layer, so their curve is one Jacobian product


# ----------------------------------------------------------------------------
# the measurement


def readout_vector(features: int, dtype: Any = jnp.float32, seed: int = 0) -> Array:
    """A fixed random unit vector (features,): the default loss is ``y_T . r``."""
    r = jax.random.normal(jax.random.key(seed), (features,), dtype)
    return r / jnp.linalg.norm(r)


def _norm_last(g: Array) -> Array:
    """Euclidean norm over the last axis, scaled first so that tiny gradients do not underflow when squared."""
    m = jnp.max(jnp.abs(g), axis=-1, keepdims=True)  # (..., 1)
    scaled = g / jnp.where(m > 0, m, 1)
    return m[..., 0] * jnp.sqrt(jnp.sum(scaled * scaled, axis=-1))


def lag_gradient_norms(
    apply: Callable[[Any, Array], Array],
    params: Any,
    x: Array,
    loss: Callable[[Array], Array] | None = None,
) -> Array:
    """``||dL_T / dx_{T-k}||`` for ``k = 0..T-1``, averaged over the batch: a (T,) array.

    Args:
      apply: the sequence model, ``apply(params, x) -> y`` with y (B, T, ...):
        output t may depend on inputs 0..t, and row b only on row b (no
        batch statistics).
      params: passed to ``apply`` as they are.
      x: continuous inputs (B, T, D), e.g. token embeddings. The result has
        their dtype (float64 under ``jax.enable_x64`` with float64 inputs).
      loss: maps the last step's output ``y[:, -1]`` (B, ...) to per-example
        losses (B,) (or to their sum). Default: ``y[:, -1] @ r`` with the fixed
        unit vector :func:`readout_vector`.

    Entry k is the mean over the batch of the Euclidean norm (over D) of the
    gradient of row b's loss with respect to ``x[b, T-1-k]``; k = 0 is the
    last step. Since row b's loss depends only on row b, one backward pass of
    the summed loss gives every row's gradient. Pure: works under ``jit``
    (``apply`` and ``loss`` are Python callables, so close over them).
    """
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"lag_gradient_norms: x must have shape (B, T, D), got {shape_str(x.shape)}")
    b, t, _ = x.shape
    if t < 1 or b < 1:
        raise ValueError(f"lag_gradient_norms: x needs at least one row and one step, got {shape_str(x.shape)}")

    def total(x):
        y = apply(params, x)
        if y.ndim < 2 or tuple(y.shape[:2]) != (b, t):
            raise ValueError(
                f"lag_gradient_norms: apply must return (B, T, ...) = ({b}, {t}, ...) for x of shape "
                f"{shape_str(x.shape)}, got {shape_str(y.shape)}"
            )
        last = y[:, -1]  # (B, ...)
        if loss is None:
            per_example = last.reshape(b, -1) @ readout_vector(math.prod(last.shape[1:]), last.dtype)  # (B,)
        else:
            per_example = loss(last)
            if jnp.shape(per_example) not in ((b,), ()):
                raise ValueError(
                    f"lag_gradient_norms: loss must return per-example losses of shape ({b},) or a scalar, "
                    f"got {shape_str(jnp.shape(per_example))}"
                )
        return jnp.sum(per_example)

    g = jax.grad(total)(x)  # (B, T, D)
    norms = _norm_last(g)  # (B, T)
    return jnp.mean(norms, axis=0)[::-1]  # (T,): index k is lag k, i.e. step T-1-k


# ----------------------------------------------------------------------------
# the models


def linear(x: Array) -> Array:
    """The identity, as ``SimpleRNNCell(activation_fn=linear)``: the linear RNN ``h_t = W h_{t-1} + U x_t``."""
    return x


class CharLM(nn.Module):
    """A character LM whose body reads embeddings: ids (B, T) -> embed (B, T, D) -> body -> logits (B, T, V).

    ``kind`` is ``rnn``, ``lstm``, ``gru`` (one ``zoo.RNN`` layer of width
    ``features``) or ``transformer`` (a learned position table, then a
    pre-LN causal ``zoo.Decoder`` of ``NUM_LAYERS`` x ``NUM_HEADS``, GPT-2's
    initialisation). The head is an untied ``Dense`` for every kind.
    :meth:`from_embeddings` is the model as a function of continuous inputs,
    the ``apply`` that :func:`lag_gradient_norms` differentiates.
    """

    kind: str
    vocab_size: int
    features: int
    max_len: int

    def setup(self):
        if self.kind not in MODELS:
            raise ValueError(f"CharLM: kind={self.kind!r}, expected one of {MODELS}")
        self.embed = Embed(self.vocab_size, self.features)
        if self.kind == "transformer":
            self.positions = LearnedPositionEmbedding(self.max_len)
            self.body = Decoder(TransformerConfig(
                num_layers=NUM_LAYERS, num_heads=NUM_HEADS, activation="gelu_tanh", layer_norm="pre",
                dropout_rate=0.0, residual_init_std=0.02 / math.sqrt(2 * NUM_LAYERS),
            ))
        else:
            self.body = RNN(CELLS[self.kind](features=self.features))
        self.head = nn.Dense(self.vocab_size)

    def embed_tokens(self, ids: Array) -> Array:
        """ids (B, T) -> (B, T, D)."""
        return self.embed(ids)

    def from_embeddings(self, x: Array) -> Array:
        """x (B, T, D) -> float32 logits (B, T, V)."""
        if self.kind == "transformer":
            x = self.positions(x)  # (B, T, D)
        return self.head(self.body(x)).astype(jnp.float32)  # (B, T, V)

    def __call__(self, ids: Array) -> Array:
        return self.from_embeddings(self.embed_tokens(ids))


@functools.partial(jax.jit, static_argnums=0)
def lm_lag_norms(model: CharLM, params: Any, ids: Array, targets: Array) -> Array:
    """Lag norms of the next-token loss at the last step w.r.t. the input embeddings: (T,).

    ``ids`` (B, T) are the inputs, ``targets`` (B,) the token after each
    window; the loss is ``cross_entropy(logits[:, -1], targets)`` per row.
    """
    x = model.apply(params, ids, method=CharLM.embed_tokens)  # (B, T, D)

    def apply(p, x):
        return model.apply(p, x, method=CharLM.from_embeddings)

    def loss(logits_last):  # (B, V) -> (B,)
        return optax.softmax_cross_entropy_with_integer_labels(logits_last, targets)

    return lag_gradient_norms(apply, params, x, loss)


@functools.partial(jax.jit, static_argnums=0)
def rnn_lag_norms(rnn: RNN, params: Any, x: Array) -> Array:
    """Lag norms of the fixed random readout of ``rnn``'s last output w.r.t. its inputs x (B, T, D): (T,)."""
    return lag_gradient_norms(rnn.apply, params, x)


@functools.partial(jax.jit, static_argnums=0)
def _mean_loss(model: CharLM, params: Any, ids: Array, targets: Array) -> Array:
    logits = model.apply(params, ids)  # (B, T, V)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def train_char_lm(
    model: CharLM, params: Any, tokens: np.ndarray, *, steps: int, batch_size: int, learning_rate: float,
    seed: int,
) -> tuple[Any, list[float]]:
    """``steps`` of Adam (global-norm clipping at 1) on random windows of ``model.max_len`` tokens.

    Returns the trained parameters and the loss of every step (nats per token).
    """
    from zoo import data

    # zoo's AdamW with no weight decay and a constant learning rate (warm-up 0, cosine from lr to lr) is Adam
    adam = TrainConfig(batch_size=batch_size, max_steps=steps, learning_rate=learning_rate,
                       min_learning_rate=learning_rate, warmup_steps=0, beta2=0.999, weight_decay=0.0, grad_clip=1.0)
    params, losses, _ = fit(lambda p, batch: _mean_loss(model, p, *batch), params,
                            lambda i: data.get_batch(tokens, batch_size, model.max_len, seed=seed, step=i), adam)
    return params, [float(v) for v in losses]


# ----------------------------------------------------------------------------
# the spectral-radius sweep


def spectral_radius(w: np.ndarray) -> float:
    """Largest eigenvalue modulus of a square matrix."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))))


def scaled_matrix(size: int, rho: float, seed: int = 0) -> np.ndarray:
    """A random Gaussian (size, size) matrix rescaled to spectral radius ``rho`` (float64)."""
    w = np.random.default_rng(seed).standard_normal((size, size)) / math.sqrt(size)
    return w * (rho / spectral_radius(w))


def spectral_sweep(
    radii: Sequence[float], *, features: int, length: int, batch_size: int, seed: int = 0
) -> dict[str, dict[str, list[float]]]:
    """Lag norms of the linear and the tanh RNN for each spectral radius, in float64.

    The same Gaussian recurrent matrix (rescaled to each ``rho``), input
    kernel ``U ~ N(0, 1/D)``, zero bias, inputs ``x ~ N(0, 1)`` (B, T, D) and
    readout for every curve. Returns ``{"linear": {str(rho): norms}, "tanh": ...}``.
    """
    rng = np.random.default_rng([seed, 1])
    h = features
    w = scaled_matrix(h, 1.0, seed)  # (H, H), radius 1
    u = rng.standard_normal((h, h)) / math.sqrt(h)  # (D, H)
    x = rng.standard_normal((batch_size, length, h))  # (B, T, D)
    out: dict[str, dict[str, list[float]]] = {}
    with jax.enable_x64(True):
        for name, act in (("linear", linear), ("tanh", jnp.tanh)):
            rnn = RNN(CELLS["rnn"](features=h, activation_fn=act, param_dtype=jnp.float64))
            curves = {}
            for rho in radii:
                # zoo's kernels multiply from the right (h @ recurrent_kernel): pass W^T, same spectrum.
                cell = {"input_kernel": u, "recurrent_kernel": (rho * w).T, "bias": np.zeros(h)}
                norms = rnn_lag_norms(rnn, {"params": {"cell": cell}}, jnp.asarray(x, jnp.float64))
                curves[_key(rho)] = [float(v) for v in np.asarray(norms)]
            out[name] = curves
    return out


def _key(rho: float) -> str:
    return f"{rho:g}"


def decay_stats(norms: Sequence[float]) -> dict[str, float | None]:
    """``decades`` = log10(norm[T-1] / norm[0]); ``per_step`` = 10^slope of log10(norm) against k over k >= 1.

    Lags whose norm is zero (underflow) are left out of the fit; ``decades`` is
    None when the last or first norm is zero.
    """
    g = np.asarray(norms, np.float64)
    decades = float(np.log10(g[-1] / g[0])) if g[0] > 0 and g[-1] > 0 and np.isfinite(g).all() else None
    k = np.arange(len(g))
    ok = (k >= 1) & (g > 0) & np.isfinite(g)
    per_step = float(10 ** np.polyfit(k[ok], np.log10(g[ok]), 1)[0]) if ok.sum() >= 2 else None
    return {"decades": decades, "per_step": per_step}


# ----------------------------------------------------------------------------
# the run


@dataclasses.dataclass(frozen=True)
class GradflowConfig:
    """Measure how the gradient of a loss at step T falls (or grows) with the lag k of the input."""

    out: Path = Path("runs/gradflow")
    """Directory for gradflow.json and gradflow.png."""
    length: int = 128
    """T: sequence length (training windows and measurement)."""
    train_steps: int = 300
    """Adam steps of each character LM."""
    features: int = 64
    """Width D of every model (embedding = hidden size); a multiple of 4 (the Transformer's heads)."""
    batch_size: int = 32
    """Training batch."""
    measure_batch: int = 64
    """Windows (held-out) or random sequences averaged over in each measurement."""
    learning_rate: float = 3e-3
    """Adam's learning rate."""
    models: tuple[Literal["rnn", "lstm", "gru", "transformer"], ...] = MODELS
    """Character LMs to measure."""
    radii: tuple[float, ...] = (0.5, 0.9, 1.0, 1.1, 1.5)
    """Spectral radii of the sweep."""
    data: str = "stdlib"
    """Corpus for the character LMs (see zoo.data.load_corpus)."""
    quick: bool = False
    """Tiny run (seconds): length <= 24, train steps <= 25, width <= 16, batches <= 8."""
    seed: int = 0
    """Seed of initialisation, batches and the sweep's matrices."""

    def resolved(self) -> GradflowConfig:
        """The sizes actually run (``--quick`` caps them), after checking the values."""

        def bad(flag, value, expected):
            raise ValueError(f"--{flag}={value!r}: expected {expected}")

        if self.length < 2:
            bad("length", self.length, "an int >= 2 (lag 0 and at least one earlier step)")
        if self.train_steps < 1:
            bad("train-steps", self.train_steps, "an int >= 1")
        if self.features < NUM_HEADS or self.features % NUM_HEADS:
            bad("features", self.features, f"a positive multiple of {NUM_HEADS} (the Transformer's heads)")
        for flag, v in (("batch-size", self.batch_size), ("measure-batch", self.measure_batch)):
            if v < 1:
                bad(flag, v, "an int >= 1")
        if not self.learning_rate > 0:
            bad("learning-rate", self.learning_rate, "a positive float")
        if not self.models:
            bad("models", self.models, f"at least one of {MODELS}")
        if not self.radii or any(not (r > 0 and math.isfinite(r)) for r in self.radii):
            bad("radii", self.radii, "one or more positive spectral radii")
        if self.seed < 0:
            bad("seed", self.seed, "an int >= 0")
        if not self.quick:
            return self
        return dataclasses.replace(
            self, length=min(self.length, 24), train_steps=min(self.train_steps, 25),
            features=min(self.features, 16), batch_size=min(self.batch_size, 8),
            measure_batch=min(self.measure_batch, 8),
        )


def _char_streams(spec: str, length: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """Char tokenizer (training split) and the train/val token streams, documents joined by end-of-text."""
    from zoo import data

    corpus = data.load_corpus(spec)
    tok = data.make_tokenizer("char", corpus.train)

    def stream(docs):
        if not docs:
            return np.zeros(0, np.int32)
        return np.concatenate([np.append(tok.encode(d), tok.eot_id) for d in docs]).astype(np.int32)

    train, val = stream(corpus.train), stream(corpus.val)
    if len(val) < length + 1:  # a corpus without a validation split: measure on training windows
        val = train
    return tok, train, val


def run(cfg: GradflowConfig, command: str | None = None) -> dict[str, Any]:
    """Measure every curve of ``cfg`` (the untrained and trained LMs, the sweep); return them as a dict."""
    from zoo import data

    run = cfg.resolved()
    say = results.say
    start = time.perf_counter()
    t = run.length
    tok, train, val = _char_streams(run.data, t)
    say(f"gradflow: T={t}, width {run.features}, {len(train):,} training characters "
        f"(vocabulary {tok.vocab_size}), {run.train_steps} steps per model")
    ids, y = data.get_batch(val, run.measure_batch, t, seed=run.seed, step=0)  # (B, T) each
    targets = y[:, -1]  # (B,): the token after each window
    untrained, trained, training = {}, {}, {}
    for i, kind in enumerate(run.models):
        t0 = time.perf_counter()
        model = CharLM(kind, tok.vocab_size, run.features, t)
        params = nn.unbox(model.init(jax.random.key(run.seed + i), ids[:1]))
        untrained[kind] = [float(v) for v in np.asarray(lm_lag_norms(model, params, ids, targets))]
        loss_before = float(_mean_loss(model, params, ids, y))
        params, losses = train_char_lm(model, params, train, steps=run.train_steps, batch_size=run.batch_size,
                                       learning_rate=run.learning_rate, seed=run.seed)
        trained[kind] = [float(v) for v in np.asarray(lm_lag_norms(model, params, ids, targets))]
        tail = losses[-max(1, len(losses) // 10):]
        training[kind] = {
            "params": int(sum(p.size for p in jax.tree.leaves(params))),
            "val_loss_before": loss_before,
            "val_loss_after": float(_mean_loss(model, params, ids, y)),
            "train_loss_first": losses[0],
            "train_loss_last": float(np.mean(tail)),
            "wall_s": time.perf_counter() - t0,
        }
        say(f"  {LABELS[kind]}: held-out loss {loss_before:.3f} -> {training[kind]['val_loss_after']:.3f} nats/char "
            f"({training[kind]['wall_s']:.1f} s)")
    t0 = time.perf_counter()
    sweep = spectral_sweep(run.radii, features=run.features, length=t, batch_size=run.measure_batch, seed=run.seed)
    say(f"  spectral sweep: {len(run.radii)} radii x 2 activations ({time.perf_counter() - t0:.1f} s)")
    summary = {
        "untrained": {k: decay_stats(v) for k, v in untrained.items()},
        "trained": {k: decay_stats(v) for k, v in trained.items()},
        "sweep": {a: {r: decay_stats(v) for r, v in c.items()} for a, c in sweep.items()},
    }
    return {
        "config": results.config_json(cfg),
        "resolved": {"length": t, "train_steps": run.train_steps, "features": run.features,
                     "batch_size": run.batch_size, "measure_batch": run.measure_batch},
        "quantity": "mean over the batch of ||d loss_T / d x_{T-k}||, x the input embeddings",
        "lags": list(range(t)),
        "vocab_size": tok.vocab_size,
        "untrained": untrained,
        "trained": trained,
        "training": training,
        "sweep": sweep,
        "summary": summary,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "wall_s": time.perf_counter() - start,
        "command": command,
    }


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def render(result: dict[str, Any], images: str | None = "") -> str:
    """The short summary: decades fallen over the sequence and the per-step factor of every curve."""
    r, s = result["resolved"], result["summary"]
    t = r["length"]
    lines = [
        (f"**Gradient flow: ||d loss_T / d x_(T-k)||, k = 0..{t - 1}** (T = {t}, width {r['features']}, "
         f"{r['train_steps']} Adam steps as a char LM on `{result['config']['data']}`; "
         f"mean over {r['measure_batch']} held-out windows)"),
        "",
    ]
    if result.get("command"):
        lines += [f"- device: {result['device']}, jax {result['jax']}; {result['wall_s']:.0f} s; {result['date']}",
                  f"- command: `{result['command']}`", ""]
    lines += results.image("gradient norms against lag", images, "gradflow.png")
    lines += [
        f"decades = log10(norm at k = {t - 1} / norm at k = 0); per step = factor of a geometric fit over k >= 1",
        "",
        ("| model | params | held-out loss before -> after | untrained: decades | per step "
         "| trained: decades | per step |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, tr in result["training"].items():
        u, a = s["untrained"][kind], s["trained"][kind]
        lines.append(
            f"| {LABELS[kind]} | {tr['params']:,} | {tr['val_loss_before']:.2f} -> {tr['val_loss_after']:.2f} "
            f"| {_fmt(u['decades'], '+.1f')} | {_fmt(u['per_step'], '.3f')} "
            f"| {_fmt(a['decades'], '+.1f')} | {_fmt(a['per_step'], '.3f')} |"
        )
    lines += [
        "",
        "Spectral-radius sweep (one Gaussian W rescaled to radius rho, random inputs, float64):",
        "",
        "| rho | linear: decades | per step | tanh: decades | per step |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for rho in result["sweep"]["linear"]:
        lin, th = s["sweep"]["linear"][rho], s["sweep"]["tanh"][rho]
        lines.append(f"| {rho} | {_fmt(lin['decades'], '+.1f')} | {_fmt(lin['per_step'], '.3f')} "
                     f"| {_fmt(th['decades'], '+.1f')} | {_fmt(th['per_step'], '.3f')} |")
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any]) -> dict[str, Any]:
    """Three panels of norms against k on a log axis: untrained LMs, trained LMs, the spectral sweep."""
    from zoo.plots import subplots

    k = np.asarray(result["lags"])
    fig, axes = subplots(1, 3, figsize=(15, 4.2))
    for ax, phase in zip(axes[:2], ("untrained", "trained")):
        for kind, norms in result[phase].items():
            ax.plot(k, norms, label=LABELS[kind])
        ax.set_title(f"char LMs, {phase}" + (f" ({result['resolved']['train_steps']} steps)"
                                             if phase == "trained" else " (initialisation)"))
    ax = axes[2]
    radii = list(result["sweep"]["linear"])
    import matplotlib

    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(radii)))
    for color, rho in zip(colors, radii):
        ax.plot(k, result["sweep"]["linear"][rho], "--", color=color, label=f"linear, rho={rho}")
        ax.plot(k, result["sweep"]["tanh"][rho], "-", color=color, label=f"tanh, rho={rho}")
    ax.set_title("spectral radius sweep (dashed: linear, solid: tanh)")
    for ax in axes:
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("lag k (input at step T-k)")
        ax.set_ylabel("||d loss_T / d x_(T-k)||")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if ax is axes[2] else 1)
    fig.tight_layout()
    return {"": fig}


EXPERIMENT = Experiment(GradflowConfig, run, render, stem="gradflow", plots=plots, description=__doc__)


def main(argv: Sequence[str] | None = None, prog: str = "zoo gradflow") -> int:
    """``zoo gradflow [flags]``: measure, print the Markdown summary, write OUT/gradflow.{json,md,png}."""
    return harness_main(EXPERIMENT, argv, prog)
