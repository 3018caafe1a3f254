"""The machinery behind the name tables of :mod:`zoo.interop.gpt2` and :mod:`zoo.interop.bert`.

A table is a list of :class:`Entry` rows, each one zoo parameter and the
Hugging Face tensor(s) it comes from, with both shapes written in the
config's dimensions (``"D 3D"``: features by 3 x features) and how the
values move between them:

* ``copy``: the same numbers, reshaped (GPT-2's Conv1D weights are already
  (in, out), as zoo's kernels; a LayerNorm weight is zoo's ``scale``);
* ``transpose``: a torch ``Linear`` weight (out, in) is zoo's kernel (in, out);
* ``stack_t``: BERT's separate query, key and value ``Linear`` weights,
  transposed and stacked into zoo's one (D, 3, N, H) kernel;
* ``stack``: their biases, stacked into (3, N, H).

Every one is a reshape, a transpose or a stack: the numbers are moved, never
computed, so a round trip gives bit-identical parameters. Rows whose HF name
holds ``{i}`` are per layer; zoo stacks those along a leading (num_layers,)
axis when the model scans its layers (``layers``), else keeps ``layers_{i}``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["Entry", "shape_of", "to_zoo", "to_hf"]

HOW = ("copy", "transpose", "stack_t", "stack")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of a name table: zoo ``path`` (shape ``zoo_shape``) <- HF ``keys`` (each ``hf_shape``)."""

    path: str  # zoo parameter path, "/"-separated (relative to the layer for per-layer rows)
    zoo_shape: str
    keys: tuple[str, ...]  # HF tensor name(s) without the model prefix; "{i}" is the layer index
    hf_shape: str
    how: str = "copy"

    def __post_init__(self):
        assert self.how in HOW, self.how
        assert (len(self.keys) > 1) == self.how.startswith("stack"), self


def shape_of(spec: str, dims: Mapping[str, int]) -> tuple[int, ...]:
    """``"D 3D"`` with dims {"D": 8} -> (8, 24): each word is an int, a dimension, or an int times one."""
    out = []
    for word in spec.split():
        m = re.fullmatch(r"(\d*)([A-Z]?)", word)
        assert m and word, (spec, word)
        factor, name = m.groups()
        out.append((int(factor) if factor else 1) * (dims[name] if name else 1))
    return tuple(out)


def _shape_str(shape: Iterable[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _entry_to_zoo(e: Entry, arrays: list[np.ndarray], dims: Mapping[str, int]) -> np.ndarray:
    shape = shape_of(e.zoo_shape, dims)
    if e.how == "copy":
        return arrays[0].reshape(shape)
    if e.how == "transpose":
        return arrays[0].T.reshape(shape)
    if e.how == "stack_t":  # k (out, in) weights -> (in, k, out) -> zoo's shape
        return np.stack([a.T for a in arrays], axis=1).reshape(shape)
    return np.stack(arrays, axis=0).reshape(shape)  # stack: k (out,) biases -> (k, out) -> zoo's shape


def _entry_to_hf(e: Entry, x: np.ndarray, dims: Mapping[str, int]) -> list[np.ndarray]:
    hf = shape_of(e.hf_shape, dims)
    x = np.asarray(x)
    if e.how == "copy":
        return [x.reshape(hf)]
    if e.how == "transpose":
        return [x.reshape(hf[::-1]).T]
    k = len(e.keys)
    if e.how == "stack_t":  # zoo (in, k, ...) -> k (out, in)
        y = x.reshape(hf[1], k, hf[0])
        return [np.ascontiguousarray(y[:, j].T) for j in range(k)]
    return list(x.reshape(k, *hf))


def _get(tree: Mapping[str, Any], path: str) -> Any:
    for part in path.split("/"):
        tree = tree[part]
    return tree


def _put(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split("/")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def to_zoo(
    state: Mapping[str, np.ndarray], entries: list[Entry], layer_entries: list[Entry], *, dims: Mapping[str, int],
    num_layers: int, layers_path: str, scan_layers: bool, source: str, used: set[str],
) -> dict[str, Any]:
    """zoo params (nested dicts of float32 arrays) from HF ``state`` (names without the model prefix).

    Every key read is added to ``used``. A missing key or a shape that differs
    from the one the config implies is a ``ValueError`` naming the tensor and
    ``source`` (the file), and both shapes.
    """
    def read(e: Entry, i: int | None) -> list[np.ndarray]:
        arrays = []
        for key in e.keys:
            name = key.format(i=i)
            if name not in state:
                raise ValueError(f"{source}: the checkpoint has no tensor {name} (zoo's {e.path})")
            x = state[name]
            want = shape_of(e.hf_shape, dims)
            if tuple(x.shape) != want:
                raise ValueError(f"{source}: tensor {name} has shape {_shape_str(x.shape)}, but the config implies "
                                 f"{_shape_str(want)} ({e.hf_shape} with {_dims_str(e.hf_shape, dims)})")
            if not (x.dtype.kind == "f" or x.dtype.name == "bfloat16"):
                raise ValueError(f"{source}: tensor {name} has dtype {x.dtype}; expected floating-point weights")
            used.add(name)
            arrays.append(np.asarray(x, np.float32))  # float16 and bfloat16 widen exactly
        return arrays

    params: dict[str, Any] = {}
    for e in entries:
        _put(params, e.path, _entry_to_zoo(e, read(e, None), dims))
    layers = []
    for i in range(num_layers):
        layer: dict[str, Any] = {}
        for e in layer_entries:
            _put(layer, e.path, _entry_to_zoo(e, read(e, i), dims))
        layers.append(layer)
    if layer_entries and num_layers:
        if scan_layers:
            import jax  # noqa: PLC0415

            _put(params, f"{layers_path}/layers", jax.tree.map(lambda *xs: np.stack(xs), *layers))
        else:
            for i, layer in enumerate(layers):
                _put(params, f"{layers_path}/layers_{i}", layer)
    return params


def to_hf(
    params: Mapping[str, Any], entries: list[Entry], layer_entries: list[Entry], *, dims: Mapping[str, int],
    num_layers: int, layers_path: str, scan_layers: bool,
) -> dict[str, np.ndarray]:
    """The inverse of :func:`to_zoo`: HF tensors (names without the model prefix) from zoo ``params``."""
    out: dict[str, np.ndarray] = {}

    def write(e: Entry, x: Any, i: int | None) -> None:
        for key, y in zip(e.keys, _entry_to_hf(e, np.asarray(x, np.float32), dims), strict=True):
            out[key.format(i=i)] = y

    for e in entries:
        write(e, _get(params, e.path), None)
    for i in range(num_layers):
        for e in layer_entries:
            if scan_layers:
                x = np.asarray(_get(params, f"{layers_path}/layers/{e.path}"))[i]
            else:
                x = _get(params, f"{layers_path}/layers_{i}/{e.path}")
            write(e, x, i)
    return out


def _dims_str(spec: str, dims: Mapping[str, int]) -> str:
    names = sorted({c for c in spec if c.isalpha()})
    return ", ".join(f"{n}={dims[n]}" for n in names)
