"""What one training step costs each device under a mesh: the bytes its collectives move, and its memory.

    collectives = step_collectives(GPTConfig(), "data=2,fsdp=4", batch_size=64)
    communication_table(collectives)   # {("fsdp", "all-gather"): bytes per device per step, ...}
    state_memory(GPTConfig(), "fsdp=8")  # parameters, gradients, AdamW moments per device

Computed, not measured: from the model config (its parameters' shapes and
logical axis names, through :func:`zoo.train.sharding.param_layouts`), the
mesh and the batch. ``tests/test_sharding.py`` checks :func:`step_collectives`
against the collectives of the compiled train step's HLO
(:func:`zoo.train.hlo.hlo_collectives`) for every mesh, count by count and
size by size. The collectives of one optimizer step, for each of its
``grad_accum_steps`` micro-batches:

* parameters split over fsdp (the weight matrices) are all-gathered over
  fsdp where they are used: once per step for those outside the scanned
  stack (not once per micro-batch: XLA hoists it out of the accumulation
  loop), twice per layer and micro-batch for those inside (forward, and
  again in the backward pass);
* every parameter's gradient is summed over the batch axes (data and fsdp
  with size > 1), once per use of the parameter (a tied embedding table is
  used twice: lookup and output head; a stacked parameter once per layer).
  ``reduce_scatter=False`` gives XLA:CPU's program, an all-reduce of the
  whole gradient over data and fsdp followed by a local slice; with
  ``reduce_scatter=True`` a gradient split over fsdp is reduce-scattered over
  fsdp and its shard all-reduced over data, as XLA's GPU and TPU pipelines
  rewrite that all-reduce and slice (``ReduceScatterCreator``);
* tensor parallelism (GPT): each Transformer block's two sub-layers
  all-reduce their (b, T, D) output over tensor in the forward pass and the
  gradient of their (b, T, D) input in the backward pass: 4 per layer (5
  with ``remat``, which runs the attention sub-layer's forward pass again;
  the feed-forward output of a pre-LN block is not needed by the backward
  pass), b = the rows of a micro-batch on one data x fsdp shard.

Scalars (the loss, the gradient norm) are left out. Bytes moved per device
are those of ring algorithms over a group of n devices: an all-reduce sends
2 (n - 1) / n times the array, an all-gather or reduce-scatter (n - 1) / n
times the whole array.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from zoo.models.gpt import GPT, GPTConfig
from zoo.models.rnn_lm import RNNLM, RNNLMConfig
from zoo.train import sharding
from zoo.train.objectives import NEXT_TOKEN

__all__ = ["Collective", "communication_table", "state_memory", "step_collectives"]

BATCH_AXES = sharding.BATCH_AXES


@dataclasses.dataclass(frozen=True)
class Collective:
    """``count`` collectives per step of one kind over the mesh ``axes``, each moving an array of
    ``array_bytes`` (whole: the all-reduce's input, the all-gather's output, the reduce-scatter's input)."""

    kind: str
    axes: tuple[str, ...]
    array_bytes: int
    count: int
    group_size: int
    what: str

    @property
    def bytes_per_device(self) -> float:
        """Bytes each device sends for all ``count`` of them (ring algorithms)."""
        n = self.group_size
        share = 2 * (n - 1) / n if self.kind == "all-reduce" else (n - 1) / n
        return self.count * self.array_bytes * share


def _sizes(mesh: Mesh | Mapping[str, int] | str) -> dict[str, int]:
    if isinstance(mesh, Mesh):
        return sharding.mesh_shape(mesh)
    if isinstance(mesh, str):
        spec = dict(kv.split("=") for kv in mesh.split(",") if kv)
        mesh = {k.strip(): int(v) for k, v in spec.items()}
    sizes = {a: int(dict(mesh).get(a, 1)) for a in sharding.MESH_AXES}
    unknown = set(dict(mesh)) - set(sharding.MESH_AXES)
    if unknown:
        raise ValueError(f"mesh axes {sorted(unknown)} are unknown; expected some of {sharding.MESH_AXES}")
    return sizes


def _model(model_config: Any):
    if isinstance(model_config, GPTConfig):
        return GPT(model_config)
    if isinstance(model_config, RNNLMConfig):
        return RNNLM(model_config)
    raise ValueError(f"step_collectives: model_config is a {type(model_config).__name__}; expected a GPTConfig or "
                     "an RNNLMConfig")


@functools.lru_cache(maxsize=8)
def _abstract_params(model_config: Any) -> Any:
    """The boxed parameters' shapes, dtypes and logical names (traced once per config)."""
    model = _model(model_config)
    return jax.eval_shape(lambda: NEXT_TOKEN.init_params(model, model_config, jax.random.key(0)))


def _layouts(model_config: Any, sizes: Mapping[str, int]) -> list[sharding.ParamLayout]:
    layouts = sharding.param_layouts(_abstract_params(model_config), sizes)
    sharding.check_model_mesh(layouts, sizes, type(_model(model_config)).__name__)
    return jax.tree.leaves(layouts, is_leaf=lambda x: isinstance(x, sharding.ParamLayout))


def _split(spec: Any, sizes: Mapping[str, int], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one device's block of an array of ``shape`` laid out as ``spec``."""
    out = []
    for n, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = (entry,) if isinstance(entry, str) else (entry or ())
        out.append(n // int(np.prod([sizes[a] for a in axes])))
    return tuple(out)


def _axes_of(spec: Any) -> set[str]:
    return {a for e in spec for a in ((e,) if isinstance(e, str) else (e or ()))}


def _uses(model_config: Any, path: str) -> int:
    """How many times the step uses a parameter: a tied embedding table twice (lookup and head)."""
    tied = getattr(model_config, "tie_embeddings", False)
    return 2 if tied and path in ("wte/embedding", "embed/embedding") else 1


def step_collectives(
    model_config: GPTConfig | RNNLMConfig, mesh: Mesh | Mapping[str, int] | str, batch_size: int, *,
    grad_accum_steps: int = 1, reduce_scatter: bool = False,
) -> list[Collective]:
    """The collectives of one optimizer step of ``batch_size`` rows (see the module docstring).

    Args:
      model_config: a GPT or recurrent-LM config (its ``block_size`` is the sequence length).
      mesh: a mesh, ``{"data": 2, "fsdp": 4}`` or ``"data=2,fsdp=4"``.
      batch_size: rows per optimizer step, split into ``grad_accum_steps`` micro-batches.
      reduce_scatter: the GPU/TPU lowering of gradients split over fsdp (else XLA:CPU's).
    """
    sizes = _sizes(mesh)
    shards = sizes["data"] * sizes["fsdp"]
    if batch_size % (grad_accum_steps * shards):
        raise ValueError(f"step_collectives: batch_size={batch_size} does not split into {grad_accum_steps} "
                         f"micro-batches over data x fsdp = {shards}")
    accum = grad_accum_steps
    compute = np.dtype(jnp.dtype(getattr(model_config, "dtype", "float32"))).itemsize
    red = tuple(a for a in BATCH_AXES if sizes[a] > 1)
    out: list[Collective] = []

    def add(kind, axes, nbytes, count, what):
        group = int(np.prod([sizes[a] for a in axes]))
        if axes and group > 1 and count:
            out.append(Collective(kind, tuple(axes), int(nbytes), int(count), group, what))

    for layout in _layouts(model_config, sizes):
        local = _split(layout.use, sizes, layout.shape)
        if layout.stacked:
            layers = layout.shape[layout.names.index("layers")]
            local = tuple(n for n, name in zip(local, layout.names) if name != "layers")
            per_step = layers * accum
        else:
            layers, per_step = 1, _uses(model_config, layout.path) * accum
        elements = int(np.prod(local, dtype=np.int64))
        gathered_axes = sorted(_axes_of(layout.store) - _axes_of(layout.use), key=sharding.MESH_AXES.index)
        # stacked matrices are cast to the compute dtype before they are gathered (their gradients too). Only
        # float32 is checked against compiled programs: XLA:CPU runs bfloat16 collectives in float32.
        nbytes = elements * (compute if layout.stacked else np.dtype(layout.dtype).itemsize)
        if gathered_axes:  # outside the stack: gathered once per step (XLA hoists it out of the micro-batches)
            gathers = 2 * layers * accum if layout.stacked else 1
            add("all-gather", gathered_axes, nbytes, gathers, f"{layout.path} (parameter)")
        if reduce_scatter and gathered_axes:
            add("reduce-scatter", gathered_axes, nbytes, per_step, f"{layout.path} (gradient)")
            split = int(np.prod([sizes[a] for a in gathered_axes]))
            rest = tuple(a for a in red if a not in gathered_axes)
            add("all-reduce", rest, nbytes // split, per_step, f"{layout.path} (gradient shard)")
        else:
            add("all-reduce", red, nbytes, per_step, f"{layout.path} (gradient)")

    if sizes["tensor"] > 1:  # Megatron: one all-reduce per sub-layer and pass
        t = model_config.block_size
        rows = batch_size // accum // shards
        forward = 3 if model_config.remat else 2  # remat runs the attention's again (the MLP's is not needed)
        add("all-reduce", ("tensor",), rows * t * model_config.features * compute,
            (forward + 2) * model_config.num_layers * accum, "block outputs (forward) and input gradients")
    return out


def communication_table(collectives: list[Collective]) -> dict[tuple[str, str], float]:
    """``{(axes joined by '+', kind): bytes each device sends per step}``, e.g. ``("data+fsdp",
    "all-reduce")``."""
    table: dict[tuple[str, str], float] = {}
    for c in collectives:
        key = ("+".join(c.axes), c.kind)
        table[key] = table.get(key, 0.0) + c.bytes_per_device
    return table


def state_memory(model_config: GPTConfig | RNNLMConfig, mesh: Mesh | Mapping[str, int] | str) -> dict[str, int]:
    """Bytes per device of the training state under ``mesh``: ``params``, ``grads``, ``adam`` (both
    moments), their ``total``; ``replicated`` (parameters not split over fsdp: the FSDP remainder);
    ``gathered_peak`` (the parameters gathered at once under FSDP: those outside the stack, whole for
    the step, plus one layer of the stack)."""
    sizes = _sizes(mesh)
    params = replicated = outside = layer = 0
    for layout in _layouts(model_config, sizes):
        local = _split(layout.store, sizes, layout.shape)
        nbytes = int(np.prod(local, dtype=np.int64)) * np.dtype(layout.dtype).itemsize
        params += nbytes
        if "fsdp" not in _axes_of(layout.store):
            replicated += nbytes
        gathered = _axes_of(layout.store) - _axes_of(layout.use)
        if gathered:
            use = int(np.prod(_split(layout.use, sizes, layout.shape), dtype=np.int64)) * np.dtype(layout.dtype).itemsize
            if layout.stacked:
                layer += use // layout.shape[layout.names.index("layers")]
            else:
                outside += use
    return {"params": params, "grads": params, "adam": 2 * params, "total": 4 * params,
            "replicated": replicated, "gathered_peak": outside + layer}
