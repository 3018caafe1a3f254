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

Objectives here: :data:`NEXT_TOKEN` (GPT and the recurrent LMs). BERT's masked
LM and classification objectives live beside the model in
``zoo.models.bert``, translation's in ``zoo.models.seq2seq``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["Objective", "NEXT_TOKEN", "next_token_loss", "masked_mean_cross_entropy"]

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
    """Mean next-token cross-entropy: batch ``inputs``, ``targets`` (b, T) int32 -> () float32, {}."""
    x, y = batch["inputs"], batch["targets"]
    if dropout_key is None:
        logits = model.apply({"params": params}, x, deterministic=True)  # (b, T, V)
    else:
        logits = model.apply({"params": params}, x, deterministic=False, rngs={"dropout": dropout_key})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)  # (b, T)
    return losses.mean(), {}


def _lm_example(config: Any) -> Batch:
    zeros = np.zeros((1, config.block_size), np.int32)
    return {"inputs": zeros, "targets": zeros}


NEXT_TOKEN = Objective(
    name="next_token",
    loss=next_token_loss,
    example_batch=_lm_example,
    model_inputs=lambda batch: ((batch["inputs"],), {}),
    tokens_key="inputs",
)
