"""The compiled train and eval steps, data parallel over the local devices.

One optimizer update per call of the train step::

    batch {name: (A, b, ...)}, A = grad_accum_steps micro-batches of b = batch_size / A rows
      -> lax.scan over the A micro-batches: objective loss and gradients of each, summed in float32
      -> mean loss, mean gradients -> clip -> AdamW -> new parameters

What is optimised is an :class:`~zoo.train.objectives.Objective` (default
:data:`~zoo.train.objectives.NEXT_TOKEN`, batches ``inputs``/``targets``): the
steps only see batch dicts and the objective's loss and metrics.

The state (:class:`TrainState`) is donated: XLA updates the parameters and
the optimizer moments in place. Dropout keys are
``fold_in(key(seed), step)`` (then ``fold_in(., micro_batch)`` when
accumulating), so a run resumed from a checkpoint draws the same masks as an
uninterrupted one.

Parallelism: a mesh ``(data, fsdp, tensor)`` over the devices
(:mod:`zoo.train.sharding`; default all on data). The batch rows are split
over data and fsdp; parameters and optimizer state live where the rules
table puts them (replicated for data parallelism, split over fsdp and
tensor otherwise), and the steps are traced with the rules in context so
that the layers gather parameters and pin activations. XLA inserts the
collectives. Every micro-batch must split evenly: ``batch_size /
grad_accum_steps`` must be a multiple of data x fsdp.

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

from zoo.layers.partitioning import gather_to
from zoo.train import sharding
from zoo.train.config import TrainConfig
from zoo.train.objectives import NEXT_TOKEN, Objective
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
    "param_layouts",
    "replicated_sharding",
    "local_rows",
    "put_global",
    "shard_batch",
    "state_shardings",
    "step_config",
]

Array = jax.Array
DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree, donated to the train step.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1, block_size=8)
      >>> cfg = zoo.train.TrainConfig(batch_size=2, max_steps=2, warmup_steps=1)
      >>> state = zoo.train.abstract_train_state(zoo.RNNLM(config), cfg, model_config=config,
      ...                                        mesh=zoo.train.make_mesh(jax.devices()[:1]))
      >>> [field for field in zoo.train.TrainState.__dataclass_fields__]
      ['step', 'params', 'opt_state', 'nonfinite_steps']
      >>> state.step.shape, state.nonfinite_steps.dtype
      ((), dtype('int32'))
    """

    step: Array  # () int32: optimizer steps taken (= index of the next batch)
    params: Any  # unboxed parameter tree, float32
    opt_state: Any  # optax state
    nonfinite_steps: Array  # () int32: steps whose update was dropped for a NaN/inf loss or gradient


# -- devices and shardings ------------------------------------------------------


def make_mesh(devices: Sequence[jax.Device] | None = None, shape: str | dict[str, int] | None = None) -> Mesh:
    """The ``(data, fsdp, tensor)`` mesh over ``devices`` (default: all of ``jax.devices()``); ``shape``
    like ``"data=2,fsdp=2"`` (default: all on data). See :func:`zoo.train.sharding.make_mesh`.

    Examples:
      >>> mesh = zoo.train.make_mesh()
      >>> mesh.axis_names, mesh.size == len(jax.devices()), mesh.shape["data"] == len(jax.devices())
      (('data', 'fsdp', 'tensor'), True, True)
    """
    return sharding.make_mesh(devices, shape)


def check_batch_split(cfg: TrainConfig, mesh: Mesh) -> int:
    """The micro-batch size, after checking it splits evenly over the mesh's data and fsdp axes."""
    shape = sharding.mesh_shape(mesh)
    n = shape["data"] * shape["fsdp"]
    micro = cfg.batch_size // cfg.grad_accum_steps
    if micro % n:
        split = (f"the device count {n}" if n == mesh.devices.size and shape["fsdp"] == 1
                 else f"data x fsdp = {shape['data']} x {shape['fsdp']} = {n}")
        raise ValueError(
            f"TrainConfig: batch_size={cfg.batch_size} with grad_accum_steps={cfg.grad_accum_steps} gives "
            f"micro-batches of {micro} rows, expected a multiple of {split} "
            f"(every micro-batch is split evenly over the data-parallel devices)"
        )
    return micro


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a (A, b, ...) batch entry: rows b split over the 'data' and 'fsdp' axes."""
    axes = tuple(a for a in sharding.BATCH_AXES if a in mesh.axis_names) or (DATA_AXIS,)
    return NamedSharding(mesh, P(None, axes))


def local_rows(batch_size: int, grad_accum_steps: int, mesh: Mesh) -> np.ndarray | None:
    """The rows of a (B, ...) global batch that this process's devices hold (sorted global row indices),
    or None when the mesh is all this process's (it holds every row).

    Micro-batch ``a`` is rows ``a * b`` to ``(a + 1) * b`` (b = B / A); within each, a process holds one
    contiguous range of rows (the devices of :func:`zoo.train.sharding.make_mesh` are in process order),
    or all of them when its devices differ only along ``tensor``.
    """
    s = batch_sharding(mesh)
    if s.is_fully_addressable:
        return None
    b = batch_size // grad_accum_steps
    spans = {(ix[1].start or 0, b if ix[1].stop is None else ix[1].stop)
             for ix in s.addressable_devices_indices_map((grad_accum_steps, b)).values()}
    lo, hi = min(a for a, _ in spans), max(z for _, z in spans)
    if sum(z - a for a, z in spans) != hi - lo:  # not one contiguous range: a device order make_mesh never gives
        raise ValueError(f"the mesh gives process {jax.process_index()} the rows {sorted(spans)} of each "
                         "micro-batch, expected one contiguous range")
    return (np.arange(grad_accum_steps)[:, None] * b + np.arange(lo, hi)).reshape(-1)  # (A * rows,)


def shard_batch(batch: dict[str, np.ndarray], grad_accum_steps: int, mesh: Mesh, *,
                global_rows: int | None = None) -> dict[str, Array]:
    """Host batch ``{name: (B, ...)}`` -> device ``{name: (A, B / A, ...)}``, rows sharded over the mesh.

    Micro-batch ``a`` is rows ``a * B / A`` to ``(a + 1) * B / A`` of the batch. On a mesh over several
    processes, ``batch`` holds only this process's rows (:func:`local_rows`, in that order) of a global
    batch of ``global_rows`` rows, and the global arrays are assembled with
    ``jax.make_array_from_process_local_data``.

    Examples:
      >>> mesh = zoo.train.make_mesh(jax.devices()[:1])
      >>> batch = {"inputs": np.zeros((4, 8), np.int32), "targets": np.zeros((4, 8), np.int32)}   # (B, T)
      >>> sharded = zoo.train.shard_batch(batch, 2, mesh)    # 2 micro-batches of 2 rows
      >>> sharded["inputs"].shape, type(sharded["inputs"]).__name__
      ((2, 2, 8), 'ArrayImpl')
    """
    def split(x):
        x = np.asarray(x)
        return x.reshape((grad_accum_steps, x.shape[0] // grad_accum_steps, *x.shape[1:]))  # (A, b, ...)

    s = batch_sharding(mesh)
    if s.is_fully_addressable:
        return jax.device_put({k: split(v) for k, v in batch.items()}, s)
    if global_rows is None:
        raise ValueError("shard_batch: global_rows is needed on a mesh over several processes")
    b = global_rows // grad_accum_steps
    return {k: jax.make_array_from_process_local_data(s, split(v), (grad_accum_steps, b, *np.shape(v)[1:]))
            for k, v in batch.items()}


def put_global(tree: Any, sharding_: NamedSharding) -> Any:
    """Host arrays with the same value on every process -> arrays placed by ``sharding_`` (``device_put``
    when the mesh is this process's; each process fills its own devices' blocks otherwise)."""
    if sharding_.is_fully_addressable:
        return jax.device_put(tree, sharding_)
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding_, lambda index: x[index])
    return jax.tree.map(put, tree)


@functools.lru_cache(maxsize=32)
def param_layouts(model: nn.Module, model_config: Any, objective: Objective, mesh: Mesh) -> Any:
    """Where each parameter lives on ``mesh`` (:class:`zoo.train.sharding.ParamLayout` s, the unboxed
    parameter structure); a ``ValueError`` when the model cannot use the mesh (before compiling)."""
    boxed = jax.eval_shape(lambda: objective.init_params(model, model_config, jax.random.key(0)))
    layouts = sharding.param_layouts(boxed, mesh)
    sharding.check_model_mesh(layouts, mesh, type(model).__name__)
    return layouts


@functools.lru_cache(maxsize=32)
def state_shardings(
    model: nn.Module, model_config: Any, objective: Objective, cfg: TrainConfig, mesh: Mesh
) -> TrainState:
    """The ``NamedSharding`` of every array of the :class:`TrainState` on ``mesh``."""
    layouts = param_layouts(model, model_config, objective, mesh)
    params = sharding.param_shardings(layouts, mesh)
    optimizer = make_optimizer(step_config(cfg))
    abstract = jax.tree.map(lambda l: jax.ShapeDtypeStruct(l.shape, l.dtype), layouts,
                            is_leaf=lambda x: isinstance(x, sharding.ParamLayout))
    opt_state = sharding.opt_state_shardings(optimizer, jax.eval_shape(optimizer.init, abstract), params, mesh)
    rep = replicated_sharding(mesh)
    return TrainState(step=rep, params=params, opt_state=opt_state, nonfinite_steps=rep)


def _gather_outside_stack(layouts: Any) -> Callable[[Any], Any]:
    """``params -> params`` with every parameter that is not in a scanned stack in its layout in use
    (FSDP: all-gathered once per step; the stacked ones are gathered per layer by the layers)."""
    is_layout = lambda x: isinstance(x, sharding.ParamLayout)  # noqa: E731

    def gather(params):
        return jax.tree.map(lambda l, w: w if l.stacked else gather_to(w, l.store, l.use), layouts, params,
                            is_leaf=is_layout)

    return gather


# -- state ------------------------------------------------------------------------


def init_train_state(
    model: nn.Module, cfg: TrainConfig, *, model_config: Any, mesh: Mesh, objective: Objective = NEXT_TOKEN,
    params: Any = None,
) -> TrainState:
    """Step 0: parameters from ``objective.init_params(model, model_config, key(cfg.seed))``, unboxed,
    and :func:`~zoo.train.optim.make_optimizer`'s state, placed on the mesh (:func:`state_shardings`).

    ``params`` (e.g. a pretrained encoder copied into a fresh classifier)
    replaces the initialised parameters; it must have their structure, shapes and dtypes.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1, block_size=8)
      >>> cfg = zoo.train.TrainConfig(batch_size=2, max_steps=2, warmup_steps=1)
      >>> state = zoo.train.init_train_state(zoo.RNNLM(config), cfg, model_config=config,
      ...                                    mesh=zoo.train.make_mesh(jax.devices()[:1]))
      >>> int(state.step), state.params["embed"]["embedding"].shape
      (0, (257, 8))
    """
    if params is None:
        return _init_fn(model, model_config, objective, step_config(cfg), mesh)()
    expected = jax.eval_shape(_init_fn(model, model_config, objective, step_config(cfg), mesh)).params
    params = nn.unbox(params)
    got = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)), params)
    want = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), expected)
    if jax.tree.structure(got) != jax.tree.structure(want) or jax.tree.leaves(got) != jax.tree.leaves(want):
        raise ValueError(f"init_train_state: params do not match the model's parameters; expected "
                         f"{jax.tree.structure(want)} with shapes {jax.tree.leaves(want)}")
    optimizer = make_optimizer(step_config(cfg))
    shardings = state_shardings(model, model_config, objective, step_config(cfg), mesh)
    if not replicated_sharding(mesh).is_fully_addressable:  # several processes: host values -> global arrays
        params = put_global(jax.tree.map(np.asarray, params), replicated_sharding(mesh))

    @functools.partial(jax.jit, out_shardings=shardings)
    def from_params(params):
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                          nonfinite_steps=jnp.zeros((), jnp.int32))

    return from_params(params)


def abstract_train_state(
    model: nn.Module, cfg: TrainConfig, *, model_config: Any, mesh: Mesh, objective: Objective = NEXT_TOKEN
) -> TrainState:
    """The shapes, dtypes and shardings of :func:`init_train_state` (``jax.ShapeDtypeStruct`` leaves),
    without computing it: the target for restoring a checkpoint.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1, block_size=8)
      >>> cfg = zoo.train.TrainConfig(batch_size=2, max_steps=2, warmup_steps=1)
      >>> abstract = zoo.train.abstract_train_state(zoo.RNNLM(config), cfg, model_config=config,
      ...                                           mesh=zoo.train.make_mesh(jax.devices()[:1]))
      >>> type(abstract.params["embed"]["embedding"]).__name__, abstract.params["embed"]["embedding"].shape
      ('ShapeDtypeStruct', (257, 8))
    """
    return jax.eval_shape(_init_fn(model, model_config, objective, step_config(cfg), mesh))


@functools.lru_cache(maxsize=32)
def _init_fn(
    model: nn.Module, model_config: Any, objective: Objective, cfg: TrainConfig, mesh: Mesh
) -> Callable[[], TrainState]:
    optimizer = make_optimizer(cfg)

    def init():
        params = nn.unbox(objective.init_params(model, model_config, jax.random.key(cfg.seed)))
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            nonfinite_steps=jnp.zeros((), jnp.int32),
        )

    return jax.jit(init, out_shardings=state_shardings(model, model_config, objective, cfg, mesh))


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



def make_train_step(model: nn.Module, cfg: TrainConfig, mesh: Mesh, objective: Objective = NEXT_TOKEN, *,
                    model_config: Any = None) -> Callable:
    """The jitted train step ``(state, batch) -> (state, metrics)``; ``state`` is donated.

    batch: ``{name: (A, b, ...)}`` from :func:`shard_batch`. metrics: () arrays
    ``loss`` (mean over the micro-batches), the objective's metrics (means),
    ``grad_norm`` (before clipping), ``lr`` (the rate this step used) and
    ``finite`` (bool; False when the update was dropped). Cached on (model,
    :func:`step_config` (cfg), mesh, objective): repeated runs reuse one compilation.
    ``model_config`` (default ``model.config``) gives the parameters' shapes for their placement.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1, block_size=8)
      >>> model, cfg = zoo.RNNLM(config), zoo.train.TrainConfig(batch_size=2, max_steps=2, warmup_steps=1)
      >>> mesh = zoo.train.make_mesh(jax.devices()[:1])     # one device; the default is all of them
      >>> state = zoo.train.init_train_state(model, cfg, model_config=config, mesh=mesh)
      >>> step = zoo.train.make_train_step(model, cfg, mesh)
      >>> tokens = zoo.data.ByteTokenizer().encode("to be or not to be " * 10)
      >>> x, y = zoo.train.random_windows(tokens, 2, 8, seed=0, step=0)
      >>> state, metrics = step(state, zoo.train.shard_batch({"inputs": x, "targets": y}, 1, mesh))
      >>> int(state.step), sorted(metrics)
      (1, ['finite', 'grad_norm', 'loss', 'lr'])
    """
    check_batch_split(cfg, mesh)
    make_optimizer(cfg)  # checks the schedule and clipping fields, with this config's values in errors
    model_config = model.config if model_config is None else model_config
    param_layouts(model, model_config, objective, mesh)  # checks the model against the mesh
    return _train_step_fn(model, model_config, step_config(cfg), mesh, objective)


@functools.lru_cache(maxsize=32)
def _train_step_fn(model: nn.Module, model_config: Any, cfg: TrainConfig, mesh: Mesh, objective: Objective
                   ) -> Callable:
    optimizer = make_optimizer(cfg)
    schedule = make_schedule(cfg)
    accum = cfg.grad_accum_steps
    stop_on_nonfinite = cfg.on_nonfinite == "stop"
    gather = _gather_outside_stack(param_layouts(model, model_config, objective, mesh))
    grad_fn = jax.value_and_grad(lambda p, b, **kw: objective.loss(model, gather(p), b, **kw), has_aux=True)

    def train_step(state: TrainState, batch: dict[str, Array]) -> tuple[TrainState, dict[str, Array]]:
        with sharding.sharding_context(mesh):
            return _step(state, batch)

    def _step(state: TrainState, batch: dict[str, Array]) -> tuple[TrainState, dict[str, Array]]:
        step_key = jax.random.fold_in(jax.random.key(cfg.seed), state.step)
        if accum == 1:
            (loss, aux), grads = grad_fn(state.params, {k: v[0] for k, v in batch.items()}, dropout_key=step_key)
        else:

            def micro_step(carry, inputs):
                micro, i = inputs  # {name: (b, ...)}, ()
                (loss_i, aux_i), grads_i = grad_fn(state.params, micro, dropout_key=jax.random.fold_in(step_key, i))
                return jax.tree.map(jnp.add, carry, (loss_i, aux_i, grads_i)), None

            first = {k: v[0] for k, v in batch.items()}
            shapes = jax.eval_shape(lambda: grad_fn(state.params, first, dropout_key=step_key))
            (loss_shape, aux_shape), grad_shape = shapes
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (loss_shape, aux_shape, grad_shape))
            sums, _ = jax.lax.scan(micro_step, zeros, (batch, jnp.arange(accum)))
            loss, aux, grads = jax.tree.map(lambda x: x / accum, sums)

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
            **aux,
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": jnp.asarray(schedule(state.step - state.nonfinite_steps), jnp.float32),
            "finite": apply,
        }
        return new_state, metrics

    replicated, batch = replicated_sharding(mesh), batch_sharding(mesh)
    state = state_shardings(model, model_config, objective, cfg, mesh)
    return jax.jit(
        _without_value_checks(train_step),
        in_shardings=(state, batch),
        out_shardings=(state, replicated),
        donate_argnums=0,
    )


def make_eval_step(model: nn.Module, mesh: Mesh, objective: Objective = NEXT_TOKEN, *, model_config: Any = None
                   ) -> Callable:
    """The jitted ``(params, batches) -> {"loss": mean, **metric means}``: batches ``{name: (N, B, ...)}``,
    N batches, rows sharded; ``params`` placed as :func:`state_shardings` places them (``model_config``
    defaults to ``model.config``).

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1, block_size=8)
      >>> model, cfg = zoo.RNNLM(config), zoo.train.TrainConfig(batch_size=2, max_steps=2, warmup_steps=1)
      >>> mesh = zoo.train.make_mesh(jax.devices()[:1])     # one device; the default is all of them
      >>> state = zoo.train.init_train_state(model, cfg, model_config=config, mesh=mesh)
      >>> tokens = zoo.data.ByteTokenizer().encode("to be or not to be " * 10)
      >>> x, y = zoo.train.random_windows(tokens, 2, 8, seed=0, step=0)   # (B, T) each
      >>> evaluate = zoo.train.make_eval_step(model, mesh)
      >>> metrics = evaluate(state.params, {"inputs": x[None], "targets": y[None]})   # N = 1 batch
      >>> sorted(metrics), metrics["loss"].shape
      (['loss'], ())
    """
    model_config = model.config if model_config is None else model_config
    return _eval_step_fn(model, model_config, mesh, objective)


@functools.lru_cache(maxsize=32)
def _eval_step_fn(model: nn.Module, model_config: Any, mesh: Mesh, objective: Objective) -> Callable:
    layouts = param_layouts(model, model_config, objective, mesh)
    gather = _gather_outside_stack(layouts)

    def eval_step(params: Any, batches: dict[str, Array]) -> dict[str, Array]:
        def one(batch):
            loss, aux = objective.loss(model, gather(params), batch, dropout_key=None)
            return {**aux, "loss": loss}

        with sharding.sharding_context(mesh):
            return jax.tree.map(jnp.mean, jax.lax.map(one, batches))  # means over the N batches

    replicated, batch = replicated_sharding(mesh), batch_sharding(mesh)
    return jax.jit(_without_value_checks(eval_step), in_shardings=(sharding.param_shardings(layouts, mesh), batch),
                   out_shardings=replicated)
