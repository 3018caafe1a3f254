"""Training objectives: what the trainer optimises, as a loss on a batch dict.

The trainer (``zoo.train.train``) knows nothing about language modelling,
masked LM or translation: it samples batches (dicts of host arrays with a
leading batch axis), asks the :class:`Objective` for the loss and its
metrics, and initialises the model through the objective::

    loss, metrics = objective.loss(model, params, batch, dropout_key=key)   # () f32, {name: () f32}
    args, kwargs = objective.model_inputs(objective.example_batch(model_config))
    variables = model.init(key, *args, deterministic=True, **kwargs)

``example_batch(model_config)`` gives one row of zeros with the shapes the
model trains on; it is what the parameters are initialised (and checkpoints
restored) against, so a run can be loaded without its data.

Objectives here: :data:`NEXT_TOKEN` (GPT and the recurrent LMs),
:data:`MASKED_LM`, :data:`SEQUENCE_CLASSIFICATION` and
:data:`TOKEN_CLASSIFICATION` (BERT), :data:`TRANSLATION` (the encoder-decoder
Transformer). Their example batches are :mod:`zoo.data.examples`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from zoo.data import examples

__all__ = [
    "Objective", "masked_mean_cross_entropy", "NEXT_TOKEN", "next_token_loss", "MASKED_LM", "masked_lm_loss",
    "SEQUENCE_CLASSIFICATION", "sequence_classification_loss", "TOKEN_CLASSIFICATION", "token_classification_loss",
    "TRANSLATION", "translation_loss",
]

Array = jax.Array
Batch = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Objective:
    """A loss on batch dicts, and how to feed and initialise the model (hashable: compiled steps are cached on it).

    Attributes:
      name: for messages and run files ("next_token", "masked_lm", ...).
      loss: ``(model, params, batch, *, dropout_key) -> (loss, metrics)``;
        ``dropout_key=None`` means deterministic (evaluation). ``loss`` is a
        () float32 mean; ``metrics`` a dict of () float32 means (e.g.
        ``accuracy``), logged as ``train_NAME`` and ``val_NAME``.
      example_batch: ``model_config -> batch`` of one row of zeros.
      model_inputs: ``batch -> (args, kwargs)`` of the model's call (for init).
      tokens_key: the batch entry whose size counts the tokens of a batch (tokens/s, MFU).
      perplexity: whether ``exp(loss)`` means anything (it is logged as ``*_ppl``).

    Examples:
      >>> objective = zoo.train.NEXT_TOKEN     # zoo.train.objectives has MASKED_LM, TRANSLATION, ...
      >>> objective.name, objective.tokens_key, objective.perplexity
      ('next_token', 'inputs', True)
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1, block_size=8)
      >>> {k: v.shape for k, v in objective.example_batch(config).items()}
      {'inputs': (1, 8), 'targets': (1, 8)}
      >>> model = zoo.RNNLM(config)
      >>> params = jax.eval_shape(lambda key: objective.init_params(model, config, key), jax.random.key(0))
      >>> sorted(params)                                      # shapes only; init_params makes them
      ['embed', 'rnn']
    """

    name: str
    loss: Callable[..., tuple[Array, dict[str, Array]]]
    example_batch: Callable[[Any], Batch]
    model_inputs: Callable[[Batch], tuple[tuple, dict]]
    tokens_key: str = "inputs"
    perplexity: bool = True

    def init_params(self, model: Any, model_config: Any, key: Array) -> Any:
        """``model.init`` on :attr:`example_batch`; returns the (boxed) ``params`` collection."""
        args, kwargs = self.model_inputs({k: jnp.asarray(v) for k, v in self.example_batch(model_config).items()})
        return model.init(key, *args, deterministic=True, **kwargs)["params"]


def masked_mean_cross_entropy(logits: Array, labels: Array, weights: Array | None = None) -> tuple[Array, Array]:
    """Weighted mean cross-entropy and accuracy in float32: logits (..., V), labels (...), weights (...) -> (), ().

    Positions of weight 0 count for nothing; a batch whose weights are all 0
    gives 0, not NaN.

    Examples:
      >>> logits = jnp.log(jnp.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]))   # (N, V)
      >>> labels, weights = jnp.array([0, 0, 0]), jnp.array([1.0, 1.0, 0.0])
      >>> loss, accuracy = zoo.train.masked_mean_cross_entropy(logits, labels, weights)
      >>> round(float(loss), 4), float(accuracy)   # (log 2 + log(1/0.9)) / 2; the third row has weight 0
      (0.3993, 1.0)
    """
    logits = logits.astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)  # (...)
    # correct when the label's logit is the row maximum (ties count as correct): cheaper than argmax on CPU
    label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]  # (...)
    correct = (label_logit >= logits.max(axis=-1)).astype(jnp.float32)  # (...)
    if weights is None:
        return losses.mean(), correct.mean()
    weights = weights.astype(jnp.float32)
    total = jnp.maximum(weights.sum(), 1e-9)
    return (losses * weights).sum() / total, (correct * weights).sum() / total


# -- next-token prediction (GPT, recurrent LMs) -------------------------------------


def next_token_loss(model: Any, params: Any, batch: Batch, *, dropout_key: Array | None) -> tuple[Array, dict]:
    """Mean next-token cross-entropy: batch ``inputs``, ``targets`` (b, T) int32 -> () float32, {}.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1, block_size=8)
      >>> model = zoo.RNNLM(config)
      >>> batch = {"inputs": jnp.array([[104, 105]]), "targets": jnp.array([[105, 33]])}   # (b, T)
      >>> params = jax.eval_shape(model.init, jax.random.key(0), batch["inputs"])["params"]  # shapes only
      >>> loss_fn = lambda p: zoo.train.next_token_loss(model, p, batch, dropout_key=None)
      >>> loss, metrics = jax.eval_shape(loss_fn, params)
      >>> loss.shape, loss.dtype, metrics
      ((), dtype('float32'), {})
    """
    x, y = batch["inputs"], batch["targets"]
    if dropout_key is None:
        logits = model.apply({"params": params}, x, deterministic=True)  # (b, T, V)
    else:
        logits = model.apply({"params": params}, x, deterministic=False, rngs={"dropout": dropout_key})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)  # (b, T)
    return losses.mean(), {}


NEXT_TOKEN = Objective(
    name="next_token",
    loss=next_token_loss,
    example_batch=examples.next_token_example,
    model_inputs=lambda batch: ((batch["inputs"],), {}),
    tokens_key="inputs",
)


# -- BERT: masked LM, sequence and token classification ------------------------------


def _apply(model: Any, params: Any, batch: dict, dropout_key: Array | None, **kwargs) -> Any:
    kwargs.update(segment_ids=batch["segment_ids"], seq_lengths=batch["seq_lengths"])
    if dropout_key is not None:
        kwargs.update(deterministic=False, rngs={"dropout": dropout_key})
    return model.apply({"params": params}, batch["ids"], **kwargs)


def masked_lm_loss(model: Any, params: Any, batch: dict, *, dropout_key: Array | None) -> tuple[Array, dict]:
    """Weighted mean cross-entropy over the masked positions of a :class:`zoo.BERTForMaskedLM`.

    Batch: ``ids`` (B, T) int32, already masked ([MASK], random or kept
    tokens at the masked positions); ``segment_ids`` (B, T) int32;
    ``seq_lengths`` (B,) int32; ``mlm_positions`` (B, P) int32, where the
    predictions are (padded with any valid position); ``mlm_labels`` (B, P)
    int32, the original ids there (anything at padding); ``mlm_weights``
    (B, P) float32, 1 for a real prediction, 0 for padding.
    Returns (loss, {"accuracy": masked accuracy}).
    """
    logits = _apply(model, params, batch, dropout_key, masked_positions=batch["mlm_positions"])  # (B, P, V)
    weights = batch["mlm_weights"]
    labels = jnp.where(weights > 0, batch["mlm_labels"], 0)  # (B, P); an out-of-range label would give NaN
    loss, accuracy = masked_mean_cross_entropy(logits, labels, weights)
    return loss, {"accuracy": accuracy}


def sequence_classification_loss(model, params, batch, *, dropout_key) -> tuple[Array, dict]:
    """Mean cross-entropy of a :class:`zoo.BERTForSequenceClassification`.

    Batch: ``ids``, ``segment_ids`` (B, T) int32, ``seq_lengths`` (B,) int32,
    ``labels`` (B,) int32 in ``[0, num_labels)``. Returns (loss, {"accuracy"}).
    """
    logits = _apply(model, params, batch, dropout_key)  # (B, num_labels)
    loss, accuracy = masked_mean_cross_entropy(logits, batch["labels"])
    return loss, {"accuracy": accuracy}


def token_classification_loss(model, params, batch, *, dropout_key) -> tuple[Array, dict]:
    """Weighted mean cross-entropy of a :class:`zoo.BERTForTokenClassification` over the labelled positions.

    Batch: ``ids``, ``segment_ids`` (B, T) int32, ``seq_lengths`` (B,) int32,
    ``labels`` (B, T) int32, ``label_weights`` (B, T) float32 (0 for padding
    and positions without a label, e.g. later word pieces).
    Returns (loss, {"accuracy"}).
    """
    logits = _apply(model, params, batch, dropout_key)  # (B, T, num_labels)
    weights = batch["label_weights"]
    loss, accuracy = masked_mean_cross_entropy(logits, jnp.where(weights > 0, batch["labels"], 0), weights)
    return loss, {"accuracy": accuracy}


def _inputs(batch: dict) -> tuple[tuple, dict]:
    return (batch["ids"],), {"segment_ids": batch["segment_ids"], "seq_lengths": batch["seq_lengths"]}


def _mlm_inputs(batch: dict) -> tuple[tuple, dict]:
    args, kwargs = _inputs(batch)
    return args, {**kwargs, "masked_positions": batch["mlm_positions"]}


MASKED_LM = Objective(
    name="masked_lm", loss=masked_lm_loss, example_batch=examples.masked_lm_example, model_inputs=_mlm_inputs,
    tokens_key="ids", perplexity=True,
)
SEQUENCE_CLASSIFICATION = Objective(
    name="sequence_classification", loss=sequence_classification_loss, example_batch=examples.sequence_classification_example,
    model_inputs=_inputs, tokens_key="ids", perplexity=False,
)
TOKEN_CLASSIFICATION = Objective(
    name="token_classification", loss=token_classification_loss, example_batch=examples.token_classification_example,
    model_inputs=_inputs, tokens_key="ids", perplexity=False,
)


# -- translation (the encoder-decoder Transformer) ----------------------------------


def translation_loss(model: Any, params: Any, batch: dict, *, dropout_key: Array | None) -> tuple[Array, dict]:
    """Mean cross-entropy over the real target positions (``t < tgt_lengths``), with optional label smoothing.

    Batch: ``src`` (b, S), ``src_lengths`` (b,), ``tgt_in`` / ``tgt_out`` (b, T),
    ``tgt_lengths`` (b,). Metrics: ``accuracy`` (next-token accuracy over the
    real positions) and, with ``label_smoothing > 0``, ``nll`` (the
    unsmoothed cross-entropy, whose exp is the perplexity).
    """
    kw = {"src_lengths": batch["src_lengths"], "tgt_lengths": batch["tgt_lengths"]}
    if dropout_key is None:
        logits = model.apply({"params": params}, batch["src"], batch["tgt_in"], deterministic=True, **kw)
    else:
        logits = model.apply({"params": params}, batch["src"], batch["tgt_in"], deterministic=False,
                             rngs={"dropout": dropout_key}, **kw)  # (b, T, V)
    labels = batch["tgt_out"]
    weights = jnp.arange(labels.shape[1])[None, :] < batch["tgt_lengths"][:, None]  # (b, T)
    nll, accuracy = masked_mean_cross_entropy(logits, labels, weights)
    smoothing = model.config.label_smoothing
    if smoothing == 0.0:
        return nll, {"accuracy": accuracy}
    soft = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)  # (b, T, V)
    losses = optax.softmax_cross_entropy(logits, soft)  # (b, T)
    w = weights.astype(jnp.float32)
    return (losses * w).sum() / jnp.maximum(w.sum(), 1e-9), {"accuracy": accuracy, "nll": nll}


TRANSLATION = Objective(
    name="translation",
    loss=translation_loss,
    example_batch=examples.translation_example,
    model_inputs=lambda batch: (
        (batch["src"], batch["tgt_in"]),
        {"src_lengths": batch["src_lengths"], "tgt_lengths": batch["tgt_lengths"]},
    ),
    tokens_key="tgt_in",
)
