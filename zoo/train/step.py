"""The compiled train and eval steps, data parallel over the local devices.

One optimizer update per call of the train step::

    batch x, y (A, b, T) int32, A = grad_accum_steps micro-batches of b = batch_size / A rows
      -> lax.scan over the A micro-batches: loss and gradients of each, summed in float32
      -> mean loss, mean gradients -> clip -> AdamW -> new parameters

The state (:class:`TrainState`) is donated: XLA updates the parameters and
the optimizer moments in place. Dropout keys are
``fold_in(key(seed), step)`` (then ``fold_in(., micro_batch)`` when
accumulating), so a run resumed from a checkpoint draws the same masks as an
uninterrupted one.

Data parallelism: a 1-D mesh ``('data',)`` over the devices; the batch rows
are sharded along it, parameters and optimizer state are replicated, and XLA
inserts the gradient all-reduce. Every micro-batch must split evenly:
``batch_size / grad_accum_steps`` must be a multiple of the device count.

Non-finite losses or gradients never reach the parameters: the update is
dropped (a ``where`` on the state, no host round trip) and counted in
``TrainState.nonfinite_steps``. With ``on_nonfinite='skip'`` training goes on
(the step counter advances; the learning-rate schedule, driven by the count
of applied updates, does not). With ``on_nonfinite='stop'`` the state also
freezes from the first bad step on (step counter included), so the host can
check the per-step ``finite`` flags whenever it syncs anyway (at log, eval
and checkpoint steps) and stop with the state as it was before the bad step,
without a device-to-host sync per step.

zoo's in-model value checks (``checkify.debug_check``) are stripped from the
compiled steps: left in, their effect turns off jit's C++ dispatch path
(see :func:`_without_value_checks`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import checkify
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from zoo.train.config import TrainConfig
from zoo.train.optim import make_optimizer, make_schedule

__all__ = [
    "TrainState",
    "abstract_train_state",
    "batch_sharding",
    "check_batch_split",
    "init_train_state",
    "make_eval_step",
    "make_mesh",
    "make_train_step",
    "next_token_loss",
    "replicated_sharding",
    "shard_batch",
    "step_config",
]

Array = jax.Array
DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree, donated to the train step."""

    step: Array  # () int32: optimizer steps taken (= index of the next batch)
    params: Any  # unboxed parameter tree, float32
    opt_state: Any  # optax state
    nonfinite_steps: Array  # () int32: steps whose update was dropped for a NaN/inf loss or gradient


# -- devices and shardings ------------------------------------------------------


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh ``('data',)`` over ``devices`` (default: all of ``jax.devices()``)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: devices is empty, expected at least one jax.Device")
    return Mesh(np.array(devices), (DATA_AXIS,))


def check_batch_split(cfg: TrainConfig, mesh: Mesh) -> int:
    """The micro-batch size, after checking it splits evenly over the mesh's devices."""
    n = mesh.devices.size
    micro = cfg.batch_size // cfg.grad_accum_steps
    if micro % n:
        raise ValueError(
            f"TrainConfig: batch_size={cfg.batch_size} with grad_accum_steps={cfg.grad_accum_steps} gives "
            f"micro-batches of {micro} rows, expected a multiple of the device count {n} "
            f"(data parallelism splits every micro-batch evenly over the devices)"
        )
    return micro


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a (A, b, T) batch: rows b split along the 'data' axis."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def shard_batch(x: np.ndarray, y: np.ndarray, grad_accum_steps: int, mesh: Mesh) -> tuple[Array, Array]:
    """Host (B, T) inputs and targets -> device (A, B / A, T) arrays, rows sharded over the mesh.

    Micro-batch ``a`` is rows ``a * B / A`` to ``(a + 1) * B / A`` of the batch.
    """
    b, t = x.shape
    shape = (grad_accum_steps, b // grad_accum_steps, t)
    return jax.device_put((x.reshape(shape), y.reshape(shape)), batch_sharding(mesh))


# -- state ------------------------------------------------------------------------


def init_train_state(model: nn.Module, cfg: TrainConfig, *, block_size: int, mesh: Mesh) -> TrainState:
    """Step 0: parameters from ``model.init(key(cfg.seed), ids (1, block_size))``, unboxed, and
    :func:`~zoo.train.optim.make_optimizer`'s state, replicated on the mesh."""
    return _init_fn(model, step_config(cfg), block_size, mesh)()


def abstract_train_state(model: nn.Module, cfg: TrainConfig, *, block_size: int, mesh: Mesh) -> TrainState:
    """The shapes, dtypes and shardings of :func:`init_train_state` (``jax.ShapeDtypeStruct`` leaves),
    without computing it: the target for restoring a checkpoint."""
    return jax.eval_shape(_init_fn(model, step_config(cfg), block_size, mesh))


@functools.lru_cache(maxsize=32)
def _init_fn(model: nn.Module, cfg: TrainConfig, block_size: int, mesh: Mesh) -> Callable[[], TrainState]:
    optimizer = make_optimizer(cfg)

    def init():
        ids = jnp.zeros((1, block_size), jnp.int32)
        params = nn.unbox(model.init(jax.random.key(cfg.seed), ids, deterministic=True)["params"])
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            nonfinite_steps=jnp.zeros((), jnp.int32),
        )

    return jax.jit(init, out_shardings=replicated_sharding(mesh))


def step_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the fields the compiled steps do not read set to fixed values.

    Compiled functions are cached on it, so runs that differ only in their
    logging, evaluation or checkpointing (or in max_steps, when decay_steps
    says the same) share one compilation.
    """
    return cfg.replace(
        batch_size=cfg.grad_accum_steps, max_steps=1, eval_interval=1, eval_batches=1, log_interval=1,
        checkpoint_interval=1, keep_checkpoints=1,
        decay_steps=cfg.max_steps if cfg.decay_steps is None else cfg.decay_steps,
    )


# -- loss ---------------------------------------------------------------------------


def next_token_loss(model: nn.Module, params: Any, x: Array, y: Array, *, dropout_key: Array | None) -> Array:
    """Mean next-token cross-entropy in float32: x, y (b, T) int32 -> () float32.

    ``dropout_key=None`` runs the model deterministically (evaluation).
    """
    if dropout_key is None:
        logits = model.apply({"params": params}, x, deterministic=True)  # (b, T, V)
    else:
        logits = model.apply({"params": params}, x, deterministic=False, rngs={"dropout": dropout_key})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)  # (b, T)
    return losses.mean()


# -- steps --------------------------------------------------------------------------


def _without_value_checks(fn: Callable) -> Callable:
    """``fn`` with zoo's in-model value checks (``checkify.debug_check``, see zoo.checks) removed.

    Unused, those checks still leave an effect in the jaxpr, which turns off
    jit's C++ dispatch path (about 1 ms of Python per call). Functionalising
    them with ``checkify`` and dropping the error removes the effect, and XLA
    then drops the checks. The trainer checks token ids on the host instead.
    """
    checkified = checkify.checkify(fn, errors=checkify.user_checks)

    @functools.wraps(fn)
    def wrapper(*args):
        _, out = checkified(*args)
        return out

    return wrapper



def make_train_step(model: nn.Module, cfg: TrainConfig, mesh: Mesh) -> Callable:
    """The jitted train step ``(state, x, y) -> (state, metrics)``; ``state`` is donated.

    x, y: (A, b, T) int32 from :func:`shard_batch`. metrics: () arrays ``loss``
    (mean over the micro-batches), ``grad_norm`` (before clipping), ``lr``
    (the rate this step used) and ``finite`` (bool; False when the update was
    dropped). Cached on (model, :func:`step_config` (cfg), mesh): repeated runs reuse one compilation.
    """
    check_batch_split(cfg, mesh)
    make_optimizer(cfg)  # checks the schedule and clipping fields, with this config's values in errors
    return _train_step_fn(model, step_config(cfg), mesh)


@functools.lru_cache(maxsize=32)
def _train_step_fn(model: nn.Module, cfg: TrainConfig, mesh: Mesh) -> Callable:
    optimizer = make_optimizer(cfg)
    schedule = make_schedule(cfg)
    accum = cfg.grad_accum_steps
    stop_on_nonfinite = cfg.on_nonfinite == "stop"
    grad_fn = jax.value_and_grad(functools.partial(next_token_loss, model))

    def train_step(state: TrainState, x: Array, y: Array) -> tuple[TrainState, dict[str, Array]]:
        step_key = jax.random.fold_in(jax.random.key(cfg.seed), state.step)
        if accum == 1:
            loss, grads = grad_fn(state.params, x[0], y[0], dropout_key=step_key)
        else:

            def micro_step(carry, inputs):
                loss_sum, grad_sum = carry
                x_i, y_i, i = inputs  # (b, T), (b, T), ()
                loss_i, grads_i = grad_fn(state.params, x_i, y_i, dropout_key=jax.random.fold_in(step_key, i))
                return (loss_sum + loss_i, jax.tree.map(jnp.add, grad_sum, grads_i)), None

            zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
            (loss_sum, grad_sum), _ = jax.lax.scan(micro_step, zeros, (x, y, jnp.arange(accum)))
            loss, grads = loss_sum / accum, jax.tree.map(lambda g: g / accum, grad_sum)

        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        apply = finite & (state.nonfinite_steps == 0) if stop_on_nonfinite else finite
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, old)
        new_state = TrainState(
            step=jnp.where(apply, state.step + 1, state.step) if stop_on_nonfinite else state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": jnp.asarray(schedule(state.step - state.nonfinite_steps), jnp.float32),
            "finite": apply,
        }
        return new_state, metrics

    replicated, batch = replicated_sharding(mesh), batch_sharding(mesh)
    return jax.jit(
        _without_value_checks(train_step),
        in_shardings=(replicated, batch, batch),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


@functools.lru_cache(maxsize=32)
def make_eval_step(model: nn.Module, mesh: Mesh) -> Callable:
    """The jitted ``(params, xs, ys) -> mean loss``: xs, ys (N, B, T) int32, N batches, rows sharded."""

    def eval_step(params: Any, xs: Array, ys: Array) -> Array:
        losses = jax.lax.map(lambda xy: next_token_loss(model, params, *xy, dropout_key=None), (xs, ys))  # (N,)
        return losses.mean()

    replicated, batch = replicated_sharding(mesh), batch_sharding(mesh)
    return jax.jit(_without_value_checks(eval_step), in_shardings=(replicated, batch, batch), out_shardings=replicated)
