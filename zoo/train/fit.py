"""The plain training loop: jitted optimizer steps over a batch function, nothing else.

:func:`zoo.train.train` is the full trainer (a run directory, checkpoints,
evaluation, metrics, resuming, data parallelism). The experiments that train
many small models in one process and measure something about them (the
long-range tasks, gradient flow) need only the updates::

    params, losses, first_step_s = fit(loss_fn, params, batch_fn, TrainConfig(...))

The optimizer is zoo's (:func:`zoo.train.optim.make_optimizer`: AdamW with
the warm-up and cosine schedule, global-norm clipping, decay on matrices
only) for ``train.max_steps`` steps; ``train``'s evaluation, logging and
checkpoint fields are not used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from zoo.train.config import TrainConfig
from zoo.train.optim import make_optimizer

__all__ = ["fit"]


def fit(loss_fn: Callable[[Any, Any], jax.Array], params: Any, batch_fn: Callable[[int], Any],
        train: TrainConfig) -> tuple[Any, np.ndarray, float]:
    """``train.max_steps`` updates of ``params``, each on ``batch_fn(step)``: (params, losses, first step seconds).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar loss``; differentiated with respect to ``params``.
      params: the initial parameters (unboxed).
      batch_fn: ``batch_fn(step) -> batch``, any pytree of arrays, the same shapes at every step.
      train: the optimizer's settings and ``max_steps``.

    Returns the parameters after the last step, the loss of every step
    (float64, computed before that step's update) and the seconds the first
    step took (compilation included).

    Examples:
      >>> cfg = zoo.train.TrainConfig(learning_rate=0.1, min_learning_rate=0.1, warmup_steps=0, max_steps=100,
      ...                             weight_decay=0.0)
      >>> x = jnp.arange(1.0, 5.0)
      >>> loss = lambda p, batch: jnp.mean((p["w"] * batch[0] - batch[1]) ** 2)  # fit y = 3 x
      >>> params, losses, _ = zoo.train.fit(loss, {"w": jnp.zeros(())}, lambda step: (x, 3 * x), cfg)
      >>> round(float(params["w"]), 1), losses.shape, bool(losses[-1] < 1e-3 < losses[0])
      (3.0, (100,), True)
    """
    tx = make_optimizer(train)

    @jax.jit
    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = tx.init(params)
    losses, first_step_s = [], 0.0
    for i in range(train.max_steps):
        start = time.perf_counter()
        params, opt_state, loss = step(params, opt_state, batch_fn(i))
        losses.append(loss)
        if i == 0:
            loss.block_until_ready()
            first_step_s = time.perf_counter() - start
    return params, np.asarray(jax.device_get(losses), np.float64), first_step_s
