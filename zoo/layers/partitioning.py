"""Logical axis names at work: where an array lives on a device mesh, from the names of its axes.

Every parameter of zoo's layers carries logical axis names (``embed``,
``heads``, ``kv_heads``, ``mlp``, ``vocab``, ``layers``, ...; see
:mod:`zoo.layers.multihead`). The activations get names too, at the few
places where their layout matters::

    (batch, length, act_embed)          the residual stream, (B, T, D)
    (batch, length, act_heads, kv)      queries, keys (act_kv_heads), values and attention outputs, (B, T, N, H)
    (batch, length, act_mlp)            the feed-forward hidden layer, (B, T, F)

A *rules* table maps names to mesh axes; it is set with flax's
``nn.logical_axis_rules(rules)`` together with a mesh in context
(``jax.sharding.use_abstract_mesh``). :mod:`zoo.train.sharding` holds zoo's table and sets
both while it traces a step. Outside such a context every function here
returns its input unchanged, so the layers run as before on one device.

Two things happen at use:

* :func:`constrain` pins an activation to its layout (a sharding
  constraint). After a row-parallel projection (attention output, second
  feed-forward layer) that is where the partitioner puts the all-reduce
  over the tensor axis.
* :func:`gather` brings a parameter from the layout it is stored in (its
  own names) to the layout it is used in (the names of the activations it
  meets: ``embed`` -> ``act_embed``, ``heads`` -> ``act_heads``, ...). With
  FSDP the stored parameter is split over the ``fsdp`` axis and used whole,
  so this is an all-gather; its gradient goes back to the stored layout (a
  reduce-scatter). Inside the scanned stack of
  :class:`~zoo.layers.TransformerStack` it gathers one layer at a time; the
  gathered copy is tagged :data:`GATHERED` so that the backward pass can
  gather again instead of keeping every layer's copy (ZeRO-3).

A mesh axis that does not divide the dimension it is assigned to is left
out of that dimension's layout (the dimension stays whole): one row of
``generate`` is not split over a data axis of 4.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import PartitionSpec as P

__all__ = [
    "USE_NAMES",
    "active",
    "constrain",
    "gather",
    "gather_to",
    "gathered",
    "logical_spec",
]

# A parameter axis in use takes the layout of the activation axis it meets.
USE_NAMES = {"embed": "act_embed", "heads": "act_heads", "kv_heads": "act_kv_heads", "mlp": "act_mlp",
             "vocab": "act_vocab"}


def _mesh_axes(assignment: Any) -> tuple[str, ...]:
    if assignment is None:
        return ()
    return (assignment,) if isinstance(assignment, str) else tuple(assignment)


def logical_spec(
    names: Sequence[str | None], shape: Sequence[int], rules: Sequence[tuple[str, Any]],
    mesh_shape: Mapping[str, int],
) -> P:
    """The ``PartitionSpec`` of an array of ``shape`` whose axes are called ``names``.

    Rules are ``(logical name, mesh axis | tuple of mesh axes | None)`` pairs
    in order of precedence (flax's semantics: the first rule for a name wins,
    and a mesh axis is used at most once per array). Mesh axes of size 1
    are dropped, and so is an assignment whose mesh axes do not divide the
    dimension (that dimension stays whole). Names without a rule are not split.
    """
    if len(names) != len(shape):
        raise ValueError(f"logical_spec: {len(names)} names {tuple(names)} for an array of shape {tuple(shape)}")
    used: set[str] = set()
    out: list[Any] = []
    for name, size in zip(names, shape):
        axes: tuple[str, ...] = ()
        for rule_name, assignment in rules:
            if name is not None and rule_name == name:
                axes = _mesh_axes(assignment)
                break
        axes = tuple(a for a in axes if mesh_shape.get(a, 1) > 1)
        split = 1
        for a in axes:
            split *= mesh_shape[a]
        if not axes or used & set(axes) or size % split:
            out.append(None)
            continue
        used |= set(axes)
        out.append(axes[0] if len(axes) == 1 else axes)
    return P(*out)


def _context() -> tuple[Sequence[tuple[str, Any]], Mapping[str, int]] | None:
    """(rules, mesh axis sizes) when both are set, else None."""
    rules = nn.get_logical_axis_rules()
    mesh = jax.sharding.get_abstract_mesh()
    if not rules or mesh.empty:
        return None
    return rules, dict(mesh.shape)


def active() -> bool:
    """Whether a rules table and a mesh are in context (the functions here do something)."""
    return _context() is not None


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """``x`` pinned to the layout its axis ``names`` give under the rules in context (else ``x``)."""
    ctx = _context()
    if ctx is None:
        return x
    return jax.lax.with_sharding_constraint(x, logical_spec(names, x.shape, *ctx))


def _use_names(names: Sequence[str | None]) -> tuple[str | None, ...]:
    return tuple(USE_NAMES.get(n) if n is not None else None for n in names)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _gather(w: jax.Array, store: P, use: P) -> jax.Array:
    return jax.lax.with_sharding_constraint(w, use)


def _gather_fwd(w, store, use):
    return _gather(w, store, use), None


def _gather_bwd(store, use, _, g):
    return (_to_store(g, store, use),)


_gather.defvjp(_gather_fwd, _gather_bwd)


def _to_store(g: jax.Array, store: P, use: P) -> jax.Array:
    """A parameter's gradient, summed over the batch shards (whole, in its layout in use), then cut to the
    stored layout: an all-reduce and a local slice, which XLA's GPU and TPU pipelines turn into one
    reduce-scatter (XLA:CPU has no such pass: it runs the all-reduce). Pinning the sum first keeps
    the partitioner from choosing other schedules (e.g. moving an embedding gradient's scatter rows)."""
    return jax.lax.with_sharding_constraint(jax.lax.with_sharding_constraint(g, use), store)


def gather(w: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """A parameter named ``names``, brought from its stored layout to its layout in use (see the module
    docstring); ``w`` itself when they are the same or no rules are in context."""
    ctx = _context()
    if ctx is None:
        return w
    return gather_to(w, logical_spec(names, w.shape, *ctx), logical_spec(_use_names(names), w.shape, *ctx))


def gather_to(w: jax.Array, store: P, use: P) -> jax.Array:
    """``w``, stored as ``store``, in layout ``use``: the all-gather of :func:`gather` for explicit
    ``PartitionSpec`` s (its gradient goes back to ``store``); needs a mesh in context."""
    if store == use:
        return w
    return _gather(w, store, use)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3, 4))
def _gathered(fn: Callable, x: jax.Array, w: jax.Array, store: P, use: P) -> jax.Array:
    return fn(x, jax.lax.with_sharding_constraint(w, use))


def _gathered_fwd(fn, x, w, store, use):
    return _gathered(fn, x, w, store, use), (x, w)  # the stored (split) parameter, not the gathered one


def _gathered_bwd(fn, store, use, residuals, g):
    x, w = residuals
    _, vjp = jax.vjp(fn, x, jax.lax.with_sharding_constraint(w, use))  # gathered again
    dx, dw = vjp(g)
    return dx, _to_store(dw, store, use)


_gathered.defvjp(_gathered_fwd, _gathered_bwd)


def gathered(fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, w: jax.Array,
             names: Sequence[str | None]) -> jax.Array:
    """``fn(x, w)`` with the parameter ``w`` (logical axes ``names``) gathered to its layout in use, and
    gathered again in the backward pass rather than kept (ZeRO-3: a stack of layers never holds more
    than one layer's gathered parameters); its gradient goes back to the stored layout. ``fn(x, w)``
    itself when nothing is to gather."""
    ctx = _context()
    if ctx is None:
        return fn(x, w)
    store, use = logical_spec(names, w.shape, *ctx), logical_spec(_use_names(names), w.shape, *ctx)
    if store == use:
        return fn(x, w)
    return _gathered(fn, x, w, store, use)
