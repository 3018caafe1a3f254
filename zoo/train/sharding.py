"""The device mesh (data, fsdp, tensor) and the one table from logical axis names to its axes.

    mesh = make_mesh(shape="data=2,fsdp=2")                # --mesh data=2,fsdp=2 (product = device count)
    shardings = state_shardings(model, model_config, objective, cfg, mesh)
    with sharding_context(mesh): ...                         # while tracing a step: the layers' constraints

Three axes, each a way to split a training step over devices:

* ``data``: data parallelism. Parameters, gradients and optimizer state are
  replicated; the batch rows are split; gradients are all-reduced.
* ``fsdp``: fully sharded data parallelism (ZeRO-3). The batch rows are split
  over data and fsdp together; every weight matrix, its gradient and its
  AdamW moments are split over fsdp along their ``embed`` (model width) axis.
  Inside the scanned stack of Transformer blocks each layer's matrices are
  all-gathered just before they are used and again in the backward pass
  (they are not kept), and their gradients are reduce-scattered back to the
  shards (:func:`zoo.layers.partitioning.gather`). Parameters outside the
  stack (embeddings, heads, recurrent cells) are gathered once at the start
  of the step. Vectors (biases, LayerNorm scales) are not split over fsdp:
  they are the replicated remainder (:func:`replicated_remainder`).
* ``tensor``: tensor parallelism (Megatron-LM). Attention heads (key/value
  heads where their count divides) and the feed-forward hidden dimension are
  split over tensor: the first projection of each sub-layer is
  column-parallel, the second row-parallel, and the sub-layer's output is
  pinned to the full width, so each sub-layer costs one all-reduce over
  tensor in the forward pass (and one in the backward pass).

The rules table :data:`RULES` maps each logical axis name to mesh axes;
everything else follows from it: parameters' layouts from their own names,
activations' from theirs (``batch``, ``act_heads``, ...). A mesh axis that
does not divide a dimension leaves that dimension whole, except the ones a
requested parallelism needs: attention heads and the feed-forward width
must divide by ``tensor`` (:func:`check_model_mesh`), and the rows of every
micro-batch by ``data x fsdp``.

The recurrent LMs have no axis to split over tensor: they train under data
and fsdp (their cells' matrices, which carry no names, are split over fsdp
along their first axis); ``tensor > 1`` is an error.

Every sharding here is a ``NamedSharding`` over the global mesh; nothing
assumes the devices belong to one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from zoo.layers.partitioning import logical_spec

__all__ = [
    "BATCH_AXES",
    "MESH_AXES",
    "RULES",
    "ParamLayout",
    "bytes_per_device",
    "check_model_mesh",
    "make_mesh",
    "mesh_shape",
    "param_layouts",
    "param_shardings",
    "parse_mesh",
    "replicated_remainder",
    "sharding_context",
    "uses_rules",
]

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch rows are split over both

# logical axis name -> mesh axes. Parameters first, then activations (zoo.layers.partitioning).
RULES: tuple[tuple[str, Any], ...] = (
    # parameters: where each axis of a stored parameter (and its gradient and AdamW moments) lives
    ("embed", "fsdp"),  # the model width of every weight matrix: ZeRO-3 shards (vectors excepted, see below)
    ("heads", "tensor"),  # attention heads: column-parallel q, k, v; row-parallel output
    ("kv_heads", "tensor"),  # key/value heads, where their count divides
    ("mlp", "tensor"),  # the feed-forward hidden width: column-parallel in, row-parallel out
    ("vocab", None), ("position", None), ("token_type", None), ("labels", None), ("layers", None),
    ("qkv", None), ("kv", None),
    # activations
    ("batch", BATCH_AXES),
    ("length", None),
    ("act_embed", None),  # the residual stream is whole on every device of a tensor group
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", None),
)

# A parameter with fewer than two axes besides the stacked-layers axis (a bias, a LayerNorm scale) is not
# split over these mesh axes: the replicated remainder of FSDP.
_MATRICES_ONLY = ("fsdp",)
_STACKED = "layers"
# The parameter names that tensor parallelism splits; a dimension so named must divide by tensor.
_TENSOR_REQUIRED = ("heads", "mlp")


# -- the mesh --------------------------------------------------------------------------


def parse_mesh(spec: str | Mapping[str, int] | None, device_count: int, flag: str = "--mesh") -> dict[str, int]:
    """``"data=2,fsdp=2"`` (or a dict) -> ``{"data": 2, "fsdp": 2, "tensor": 1}``; None or "": all on data.

    Axes left out have size 1. Raises ``ValueError`` for an unknown axis, a
    size that is not a positive int, an axis given twice, or sizes whose
    product is not ``device_count``.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return {"data": device_count, "fsdp": 1, "tensor": 1}
    if isinstance(spec, str):
        items = []
        for part in spec.split(","):
            name, eq, value = part.partition("=")
            if not eq:
                raise ValueError(f"{flag} {spec}: {part.strip()!r} is not AXIS=SIZE; expected e.g. data=2,fsdp=2 "
                                 f"(axes {', '.join(MESH_AXES)})")
            items.append((name.strip(), value.strip()))
    else:
        items = list(dict(spec).items())
    shape: dict[str, int] = {}
    for name, value in items:
        if name not in MESH_AXES:
            raise ValueError(f"{flag} {_show(spec)}: unknown mesh axis {name!r}; expected some of "
                             f"{', '.join(MESH_AXES)}")
        if name in shape:
            raise ValueError(f"{flag} {_show(spec)}: axis {name!r} is given twice")
        try:
            size = int(value)
        except (TypeError, ValueError):
            size = 0
        if size < 1 or str(value).strip() != str(size):
            raise ValueError(f"{flag} {_show(spec)}: {name}={value!r}, expected a positive int")
        shape[name] = size
    full = {a: shape.get(a, 1) for a in MESH_AXES}
    if math.prod(full.values()) != device_count:
        raise ValueError(f"{flag} {_show(spec)}: data x fsdp x tensor = {' x '.join(map(str, full.values()))} = "
                         f"{math.prod(full.values())}, expected the device count {device_count}")
    return full


def _show(spec: Any) -> str:
    return spec if isinstance(spec, str) else ",".join(f"{k}={v}" for k, v in dict(spec).items())


def make_mesh(devices: Sequence[jax.Device] | None = None, shape: str | Mapping[str, int] | None = None) -> Mesh:
    """The ``(data, fsdp, tensor)`` mesh over ``devices`` (default: all of ``jax.devices()``).

    ``shape`` as for :func:`parse_mesh` (default: every device on data).
    Devices are laid out with tensor fastest, then fsdp, then data
    (``jax.make_mesh``'s order), so that a tensor group is neighbouring devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: devices is empty, expected at least one jax.Device")
    sizes = parse_mesh(shape, len(devices))
    grid = np.array(devices, dtype=object).reshape([sizes[a] for a in MESH_AXES])
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def mesh_shape(mesh: Mesh) -> dict[str, int]:
    """``{"data": D, "fsdp": F, "tensor": T}`` of a mesh (axes it lacks have size 1)."""
    return {a: int(dict(mesh.shape).get(a, 1)) for a in MESH_AXES}


def mesh_str(mesh: Mesh | Mapping[str, int]) -> str:
    """``data=2,fsdp=2,tensor=1``."""
    shape = mesh_shape(mesh) if isinstance(mesh, Mesh) else dict(mesh)
    return ",".join(f"{a}={shape.get(a, 1)}" for a in MESH_AXES)


def uses_rules(mesh: Mesh) -> bool:
    """Whether steps on ``mesh`` need the rules in context: fsdp or tensor > 1. (Data parallelism alone
    needs none: the batch's sharding is all there is, and the program is the one-device program's.)"""
    shape = mesh_shape(mesh)
    return shape["fsdp"] > 1 or shape["tensor"] > 1


@contextlib.contextmanager
def sharding_context(mesh: Mesh) -> Iterator[None]:
    """:data:`RULES` and ``mesh`` in context, for tracing (inside ``jit``) a function whose layers
    constrain their activations and gather their parameters; nothing when only data parallel."""
    if not uses_rules(mesh):
        yield
        return
    with nn.logical_axis_rules(RULES), jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        yield


# -- parameters ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParamLayout:
    """Where one parameter lives: its path, shape, dtype, logical names (None: unnamed), stored spec and
    the spec it is used in (the same except where FSDP gathers it)."""

    path: str
    shape: tuple[int, ...]
    dtype: Any
    names: tuple[str | None, ...] | None
    store: P
    use: P

    @property
    def stacked(self) -> bool:
        return self.names is not None and _STACKED in self.names

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def _drop(spec: P, axes: Sequence[str]) -> P:
    """``spec`` without the mesh axes ``axes``."""
    out = []
    for entry in spec:
        kept = tuple(a for a in ((entry,) if isinstance(entry, str) else (entry or ())) if a not in axes)
        out.append(None if not kept else kept[0] if len(kept) == 1 else kept)
    return P(*out)


def _param_layout(path: str, names: tuple | None, shape: tuple[int, ...], dtype: Any,
                  sizes: Mapping[str, int]) -> ParamLayout:
    from zoo.layers.partitioning import USE_NAMES  # noqa: PLC0415

    if names is None:  # no logical names (the recurrent cells): ZeRO-3 on the first axis that divides
        spec: list[Any] = [None] * len(shape)
        if len(shape) >= 2 and sizes["fsdp"] > 1:
            for i, n in enumerate(shape):
                if n % sizes["fsdp"] == 0:
                    spec[i] = "fsdp"
                    break
        return ParamLayout(path, shape, dtype, None, P(*spec), P(*([None] * len(shape))))
    store = logical_spec(names, shape, RULES, sizes)
    if sum(n != _STACKED for n in names) < 2:
        store = _drop(store, _MATRICES_ONLY)
    use_names = tuple(USE_NAMES.get(n) if n is not None else None for n in names)
    use = logical_spec(use_names, shape, RULES, sizes)
    return ParamLayout(path, shape, dtype, tuple(names), store, use)


def param_layouts(boxed_params: Any, mesh: Mesh | Mapping[str, int]) -> Any:
    """A tree of :class:`ParamLayout` with the unboxed structure of ``boxed_params`` (``init``'s
    ``params``, boxed in ``nn.LogicallyPartitioned``; arrays or ``ShapeDtypeStruct``)."""
    from zoo.train.checkpoint import leaves_with_paths  # noqa: PLC0415

    sizes = mesh_shape(mesh) if isinstance(mesh, Mesh) else {a: int(dict(mesh).get(a, 1)) for a in MESH_AXES}
    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)  # noqa: E731
    leaves, treedef = jax.tree.flatten(boxed_params, is_leaf=is_box)
    paths = [p for p, _ in leaves_with_paths(nn.unbox(boxed_params))]
    out = []
    for path, leaf in zip(paths, leaves, strict=True):
        names = tuple(leaf.names) if is_box(leaf) else None
        value = leaf.value if is_box(leaf) else leaf
        out.append(_param_layout(path, names, tuple(value.shape), value.dtype, sizes))
    return jax.tree.unflatten(treedef, out)


def check_model_mesh(layouts: Any, mesh: Mesh | Mapping[str, int], model_name: str = "the model") -> None:
    """Refuse a mesh the model cannot use, before anything is compiled: a ``ValueError`` when tensor > 1
    and no parameter has an axis to split over it (the recurrent LMs), or when attention heads or the
    feed-forward width do not divide by tensor."""
    sizes = mesh_shape(mesh) if isinstance(mesh, Mesh) else {a: int(dict(mesh).get(a, 1)) for a in MESH_AXES}
    t = sizes["tensor"]
    if t == 1:
        return
    leaves = jax.tree.leaves(layouts, is_leaf=lambda x: isinstance(x, ParamLayout))
    tensor_axes = [n for n, axes in RULES if axes == "tensor" and not n.startswith("act_")]
    if not any(layout.names and set(layout.names) & set(tensor_axes) for layout in leaves):
        raise ValueError(f"--mesh tensor={t}: {model_name} has no parameter axis to split over tensor "
                         f"({', '.join(tensor_axes)}); it supports the data and fsdp axes only")
    for layout in leaves:
        for name, size in zip(layout.names or (), layout.shape):
            if name in _TENSOR_REQUIRED and size % t:
                what = "attention heads" if name == "heads" else "the feed-forward width (mlp_dim)"
                raise ValueError(f"--mesh tensor={t}: {model_name} has {size} {what} ({layout.path}), "
                                 f"not divisible by tensor={t}")


def param_shardings(layouts: Any, mesh: Mesh) -> Any:
    """The stored ``NamedSharding`` of each parameter (a tree like ``layouts``)."""
    return jax.tree.map(lambda l: NamedSharding(mesh, l.store), layouts,
                        is_leaf=lambda x: isinstance(x, ParamLayout))


def opt_state_shardings(optimizer: optax.GradientTransformation, opt_state: Any, params_sharding: Any,
                        mesh: Mesh) -> Any:
    """Shardings of an optax state: each parameter-shaped part (AdamW's moments) as its parameter,
    everything else (step counts) replicated."""
    return optax.tree_map_params(optimizer, lambda _, s: s, opt_state, params_sharding,
                                 transform_non_params=lambda _: NamedSharding(mesh, P()))


def replicated_remainder(layouts: Any, axis: str = "fsdp") -> int:
    """Bytes of the parameters not split over ``axis`` (per copy of the parameters, one array each)."""
    leaves = jax.tree.leaves(layouts, is_leaf=lambda x: isinstance(x, ParamLayout))
    return sum(l.nbytes for l in leaves if not any(axis in ((e,) if isinstance(e, str) else (e or ()))
                                                   for e in l.store))


def bytes_per_device(tree: Any) -> dict[jax.Device, int]:
    """Bytes each device holds of the arrays in ``tree``, summed over their addressable shards."""
    out: dict[jax.Device, int] = {}
    for x in jax.tree.leaves(tree):
        for shard in getattr(x, "addressable_shards", ()):
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out

