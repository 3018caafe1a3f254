"""The optimizer: AdamW with warmup and cosine decay, global-norm clipping, decay on matrices only.

    grads -> clip_by_global_norm(grad_clip)        (left out when grad_clip == 0)
          -> adamw(lr(step), b1, b2, weight_decay, mask=weight_decay_mask)

The learning rate (:func:`make_schedule`) rises linearly from 0 at step 0 to
``learning_rate`` at ``warmup_steps``, then follows a half cosine down to
``min_learning_rate`` at ``decay_steps`` (default ``max_steps``, warmup
included, as in nanoGPT) and stays there::

    lr(s) = learning_rate * s / warmup_steps                                     s <  warmup_steps
    lr(s) = min_lr + (learning_rate - min_lr) * (1 + cos(pi * p)) / 2,          warmup_steps <= s < decay_steps
            with p = (s - warmup_steps) / (decay_steps - warmup_steps)
    lr(s) = min_lr                                                               s >= decay_steps

Weight decay applies to weight matrices and embedding tables only, not to
biases or LayerNorm scales (:func:`weight_decay_mask`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax

from zoo.errors import ConfigError
from zoo.train.config import TrainConfig

__all__ = ["make_optimizer", "make_schedule", "weight_decay_mask"]

# Parameter names that never get weight decay, whatever their rank: the
# multi-head projections' biases are (heads, head_dim), and a scanned stack
# stacks LayerNorm scales into (layers, features).
_NO_DECAY_NAMES = ("bias", "scale")
# The logical axis nn.scan adds to stacked layer parameters (see zoo.layers.transformer).
_STACKED_AXIS = "layers"


def make_schedule(cfg: TrainConfig) -> optax.Schedule:
    """Learning rate as a function of the optimizer step: linear warmup, then cosine decay.

    Examples:
      >>> cfg = zoo.train.TrainConfig(learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=10,
      ...                             max_steps=100)
      >>> schedule = zoo.train.make_schedule(cfg)
      >>> [round(float(schedule(step)), 6) for step in (0, 5, 10, 100)]
      [0.0, 0.0005, 0.001, 0.0001]
    """
    decay_steps = cfg.max_steps if cfg.decay_steps is None else cfg.decay_steps
    if decay_steps <= cfg.warmup_steps:
        raise ConfigError(
            "TrainConfig", "warmup_steps", cfg.warmup_steps,
            f"fewer than decay_steps={decay_steps} (max_steps when decay_steps is None): "
            "the cosine decay starts after the warmup",
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        decay_steps=decay_steps,
        end_value=cfg.min_learning_rate,
    )


def _leaf_name(path) -> str:
    last = path[-1] if path else None
    for attr in ("key", "name", "idx"):
        if hasattr(last, attr):
            return str(getattr(last, attr))
    return str(last)


def weight_decay_mask(params: Any) -> Any:
    """True for the parameters that get weight decay: matrices (and tables), not biases or norms.

    A parameter is decayed when it has at least two axes that are not the
    stacked-layers axis (known from ``nn.LogicallyPartitioned`` metadata when
    the tree is still boxed) and its name is not a bias or a scale. Works on
    boxed or unboxed parameter trees (``flax.linen.unbox``) and returns a tree
    of Python bools with the unboxed structure.

    Examples:
      >>> params = {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)},
      ...           "norm": {"scale": jnp.ones(4)}, "embed": {"embedding": jnp.ones((10, 4))}}
      >>> zoo.train.weight_decay_mask(params)
      {'dense': {'bias': False, 'kernel': True}, 'embed': {'embedding': True}, 'norm': {'scale': False}}
    """

    def decide(path, leaf) -> bool:
        if isinstance(leaf, nn.LogicallyPartitioned):
            names = leaf.names or ()
            ndim = len(leaf.value.shape) - sum(n == _STACKED_AXIS for n in names)
        else:
            ndim = len(leaf.shape)
        name = _leaf_name(path).lower()
        return ndim >= 2 and not any(name.endswith(n) for n in _NO_DECAY_NAMES)

    return jax.tree_util.tree_map_with_path(
        decide, params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
    )


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW with :func:`make_schedule`, global-norm clipping and decay on matrices only.

    Examples:
      >>> cfg = zoo.train.TrainConfig(learning_rate=1e-3, warmup_steps=2)
      >>> optimizer = zoo.train.make_optimizer(cfg)
      >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> opt_state = optimizer.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> updates, opt_state = jax.jit(optimizer.update)(grads, opt_state, params)
      >>> jax.tree.map(lambda u: u.shape, updates)
      {'dense': {'bias': (2,), 'kernel': (2, 2)}}
    """
    clip = optax.clip_by_global_norm(cfg.grad_clip) if cfg.grad_clip > 0 else optax.identity()
    return optax.chain(
        clip,
        optax.adamw(
            make_schedule(cfg),
            b1=cfg.beta1,
            b2=cfg.beta2,
            weight_decay=cfg.weight_decay,
            mask=weight_decay_mask,
        ),
    )
