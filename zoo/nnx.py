"""zoo for Flax NNX users: NNX forms of zoo's layers and models, through ``flax.nnx.bridge``.

zoo is written in Flax linen. Every class here is the same linen module
carried into NNX by :class:`flax.nnx.bridge.ToNNX` (one implementation, so
the two forms cannot drift apart), built the NNX way: constructed with
``rngs`` and initialised at once, parameters held as ``nnx.Param`` inside the
object, called directly::

    from flax import nnx
    import zoo.nnx

    model = zoo.nnx.GPT(zoo.GPTConfig(...), rngs=nnx.Rngs(0))
    logits = model(ids)                                       # (B, T, V)
    optimizer = nnx.Optimizer(model, optax.adamw(3e-4), wrt=nnx.Param)

What the bridge needs and this module does for you:

* Initialisation from example inputs (linen infers shapes from a call): each
  constructor makes them from its arguments (a config, ``in_features``) and
  runs the linen ``init`` under ``jax.jit``.
* Eager sharding: zoo's parameters carry logical axis names (``'embed'``,
  ``'mlp'``, ``'heads'``, ...; scanned stacks add ``'layers'``), which NNX
  keeps as each ``nnx.Param``'s ``out_sharding``. Flax's default (eager
  sharding) then wants a mesh at creation and fails without one ("An auto
  mesh context or metadata is required"). Without a mesh, parameters are
  created unsharded (``eager_sharding=False``), names kept; under
  ``jax.set_mesh(mesh)`` they are created sharded by the logical axis rules in
  force (``nnx.logical_axis_rules(zoo.nnx.axis_rules(mlp='model', ...))``),
  which must place every name zoo uses: :func:`axis_rules` fills the rest
  with None (replicated).
* Dropout: a call with ``deterministic=False`` draws from the ``rngs`` given
  at construction (its ``dropout`` stream, else its default one).
* Decoding caches: ``init_cache(...)`` allocates zeros as ``nnx.Cache``; then
  ``model(x, decode=True)`` reads and updates them in place.

Recurrent layers. :class:`RNN` takes an NNX cell of this module
(``zoo.nnx.LSTMCell(in_features, hidden_features, rngs=...)``), whose
parameters it uses, as ``flax.nnx.RNN`` does; or a linen zoo cell
(``zoo.LSTMCell(8)``) together with ``in_features`` and ``rngs``, which it
wraps into that NNX cell first. Both, then; but not Flax's own
``nnx.LSTMCell``: zoo's RNN runs its cells' fused sequence kernels, which
Flax's cells do not have (use ``flax.nnx.RNN`` for those). :class:`RNNStack`
takes a linen cell as a template, cloned once per layer, as zoo's does.

Parameters convert both ways, with the same names and nesting as linen's
(``decoder/layers/mlp/wi/kernel``): :func:`linen_params` gives the linen
``params`` (plain arrays) of an NNX model, :func:`load_linen_params` puts
linen params (boxed or not; from ``init``, ``zoo.load_run``,
``zoo.load_pretrained``) into one, and every constructor takes ``params=`` to
start from them instead of a random initialisation.

Anything else of zoo's (an ``Encoder``, ``BERT``'s other heads, your own
linen module) goes through :func:`bridge` with example inputs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import traversals
from flax.nnx.bridge import ToNNX
from flax.nnx.bridge import variables as bridge_variables

from zoo.checks import shape_str
from zoo.layers import cells as _cells
from zoo.layers import multihead as _multihead
from zoo.layers import recurrent as _recurrent
from zoo.layers import transformer as _transformer
from zoo.models import bert as _bert
from zoo.models import gpt as _gpt
from zoo.models import rnn_lm as _rnn_lm
from zoo.models import seq2seq as _seq2seq
from zoo.models.beam import init_cache as _seq2seq_cache
from zoo.models.generate import init_cache as _gpt_cache

Array = jax.Array

__all__ = [  # noqa: RUF022 (in reading order)
    "Bridged", "bridge", "linen_params", "load_linen_params", "axis_rules", "LOGICAL_AXES",
    "SimpleRNNCell", "LSTMCell", "GRUCell", "MinGRUCell", "MinLSTMCell", "RNN", "Bidirectional", "RNNStack",
    "MultiHeadAttention", "TransformerBlock", "GPT", "RNNLM", "BERT", "BERTForMaskedLM", "BERTForPreTraining",
    "BERTForSequenceClassification", "BERTForTokenClassification", "Seq2SeqTransformer",
]

# Every logical axis name zoo's parameters carry (tests/test_nnx.py checks the models against it).
LOGICAL_AXES = ("layers", "embed", "vocab", "position", "token_type", "mlp", "heads", "kv_heads", "kv", "qkv", "labels")


def axis_rules(**mesh_axes: str | tuple[str, ...] | None) -> tuple[tuple[str, Any], ...]:
    """Logical axis rules for every name in :data:`LOGICAL_AXES`: the given ones, None (replicated) for the rest.

    ``axis_rules(mlp='model', heads='model', vocab='model')`` is Megatron-style
    tensor parallelism over a mesh axis ``'model'``. Use it with
    ``nnx.logical_axis_rules`` (``flax.linen.logical_axis_rules`` is the same).

    Examples:
      >>> import zoo.nnx
      >>> rules = zoo.nnx.axis_rules(mlp="model", heads="model")   # tensor parallel over a mesh axis "model"
      >>> dict(rules)["mlp"], dict(rules)["embed"]                  # every other name is replicated
      ('model', None)
      >>> len(rules) == len(zoo.nnx.LOGICAL_AXES)
      True
    """
    unknown = sorted(set(mesh_axes) - set(LOGICAL_AXES))
    if unknown:
        raise ValueError(f"axis_rules: {unknown} are not logical axes of zoo's parameters; expected some of "
                         f"{list(LOGICAL_AXES)}")
    return tuple((name, mesh_axes.get(name)) for name in LOGICAL_AXES)


# ---------------------------------------------------------------------------
# the bridge


def _rngs(rngs: nnx.Rngs | int | None) -> nnx.Rngs | None:
    return nnx.Rngs(rngs) if isinstance(rngs, int) else rngs


def _keys(rngs: nnx.Rngs) -> dict[str, Array]:
    """linen's rng dict from NNX streams, as ToNNX makes it ('default' serves as 'params')."""
    keys = {name: stream() for name, stream in rngs.items()}
    if "params" not in keys and "default" in keys:
        keys["params"] = keys.pop("default")
    return keys


def _plain(tree: Any) -> Any:
    """``tree`` without linen's metadata boxes; unlike ``nn.unbox``, no sharding constraint is applied."""
    return jax.tree.map(lambda x: x.value if isinstance(x, nn.meta.AxisMetadata) else x, tree,
                        is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def _unwrap_params(params: Any, where: str) -> dict:
    params = _plain(params)
    if isinstance(params, Mapping) and set(params) == {"params"}:  # a whole variables dict
        params = params["params"]
    if not isinstance(params, Mapping):
        raise TypeError(f"{where}: params must be a nested dict of arrays (linen's 'params'), got "
                         f"{type(params).__name__}")
    return dict(params)


def _flat(tree: Mapping) -> dict[tuple, Any]:
    return traversals.flatten_mapping(tree)


def _check_same_tree(got: Mapping, want: Mapping, where: str) -> None:
    """``got`` has exactly the paths and shapes of ``want``, or a ValueError naming the first difference."""
    got_flat, want_flat = _flat(got), _flat(want)
    missing = sorted("/".join(map(str, p)) for p in want_flat.keys() - got_flat.keys())
    extra = sorted("/".join(map(str, p)) for p in got_flat.keys() - want_flat.keys())
    if missing or extra:
        raise ValueError(f"{where}: params do not fit the model: missing {missing[:3]}"
                         f"{' ...' if len(missing) > 3 else ''}, unexpected {extra[:3]}{' ...' if len(extra) > 3 else ''}")
    for path, w in want_flat.items():
        if tuple(jnp.shape(got_flat[path])) != tuple(w.shape):
            raise ValueError(f"{where}: parameter {'/'.join(map(str, path))} has shape "
                             f"{shape_str(jnp.shape(got_flat[path]))}, the model's has {shape_str(w.shape)}")


def _sharded(variables: Mapping, where: str) -> bool:
    """Whether variables are created sharded (eager sharding under a mesh); checks the mesh and the rules."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return False
    if any(t == jax.sharding.AxisType.Explicit for t in mesh.axis_types):
        raise ValueError(
            f"{where}: the mesh has Explicit axes {mesh.axis_types}; zoo's layers place their parameters with "
            "sharding constraints (linen's logical axes), which Explicit axes turn into assertions: make the mesh "
            "with axis_types=(jax.sharding.AxisType.Auto,) * len(axis_names)")
    if not nnx.using_eager_sharding():
        return False
    placed = {name for name, _ in nn.get_logical_axis_rules()}
    for path, names in _flat(nn.get_partition_spec(variables)).items():
        missing = [n for n in names or () if n is not None and n not in placed]
        if missing:
            raise ValueError(
                f"{where}: under a mesh, parameters are created sharded by the logical axis rules, but they "
                f"do not place {missing} (of {'/'.join(map(str, path))}); use "
                "nnx.logical_axis_rules(zoo.nnx.axis_rules(...)), which places every name zoo uses")
    return True


@functools.lru_cache(maxsize=64)
def _cached_jit_init(module: nn.Module, example_kwargs: tuple) -> Callable:
    return jax.jit(functools.partial(module.init, **dict(example_kwargs)))


def _jit_init(module: nn.Module, example_kwargs: dict, out_shardings: Any) -> Callable:
    """``module.init`` under ``jax.jit``, one per (module, keyword arguments): a second model compiles nothing."""
    if out_shardings is None:
        try:
            return _cached_jit_init(module, tuple(example_kwargs.items()))
        except TypeError:  # unhashable keyword arguments
            pass
    return jax.jit(functools.partial(module.init, **example_kwargs), out_shardings=out_shardings)


class Bridged(ToNNX):
    """A zoo linen module as an NNX module: :class:`flax.nnx.bridge.ToNNX`, initialised at construction.

    ``Bridged(module, *example_args, rngs=..., **example_kwargs)`` runs
    ``module.init`` on the example inputs (under ``jax.jit``) and holds the
    variables as NNX variables (``nnx.Param`` with the logical axis names as
    ``out_sharding``). ``params=`` (linen's params, e.g. from
    ``zoo.load_run``) skips the random initialisation: only shapes are traced.
    Calls are ``module.apply`` with these variables; other methods of the
    linen module work too (``model.encode(...)``), as ToNNX makes them.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> encoder = zoo.Encoder(zoo.TransformerConfig(num_layers=2, num_heads=2, mlp_dim=32))
      >>> x = jnp.ones((2, 4, 8))                                   # example inputs (B, T, D)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.Bridged(encoder, x, rngs=nnx.Rngs(0)))   # shapes only
      >>> isinstance(model, nnx.Module), nnx.eval_shape(lambda m, x: m(x), model, x).shape
      (True, (2, 4, 8))
    """

    def __init__(self, module: nn.Module, *example_args: Any, rngs: nnx.Rngs | int | None = None,
                 params: Any = None, **example_kwargs: Any):
        rngs = _rngs(rngs)
        where = f"zoo.nnx.{type(self).__name__}"
        if rngs is None and params is None:
            raise ValueError(f"{where}: rngs is needed to initialise the parameters (e.g. rngs=nnx.Rngs(0)), "
                             "or params= to start from given ones")
        super().__init__(module, rngs=rngs)
        init = functools.partial(module.init, **example_kwargs)
        shapes = jax.eval_shape(init, {"params": jax.random.key(0)}, *example_args)  # boxed: the axis names
        # Under a mesh, parameters are made (or placed) straight into the shardings the rules give.
        out_shardings = nn.logical_to_mesh(nn.get_partition_spec(shapes)) if _sharded(shapes, where) else None
        if params is None:
            variables = _jit_init(module, example_kwargs, out_shardings)(_keys(self.to_nnx__rngs), *example_args)
        else:
            params = _unwrap_params(params, where)
            _check_same_tree(params, _plain(shapes["params"]), where)
            values = _flat(params)
            # the given values in linen's boxes, which hold the logical axis names
            variables = {"params": traversals.unflatten_mapping({
                path: box.replace_boxed(jnp.asarray(values[path], box.value.dtype))
                if isinstance(box, nn.meta.AxisMetadata) else jnp.asarray(values[path], box.dtype)
                for path, box in _flat(shapes["params"]).items()})}
            if out_shardings is not None:
                variables = jax.jit(lambda v: v, out_shardings={"params": out_shardings["params"]})(variables)
        self._set_variables(variables, where)

    # -- variables ------------------------------------------------------------

    def _set_variables(self, variables: Mapping, where: str) -> None:
        """Add linen ``variables`` ({collection: tree}) as NNX variables, merged into those held (as ToNNX does)."""
        # Flax's default, eager sharding, needs a mesh: without one, create the variables unsharded
        # (the logical axis names stay in their metadata).
        eager = _sharded(variables, where)
        with nnx.use_eager_sharding(eager):
            attrs = bridge_variables.linen_vars_to_nnx_attrs(variables)
        for name, value in attrs.items():
            old = vars(self).get(name)
            if isinstance(old, dict) and isinstance(value, dict):
                value = traversals.unflatten_mapping({**_flat(old), **_flat(value)})
            setattr(self, name, nnx.data(value))

    @property
    def linen_module(self) -> nn.Module:
        """The linen module this is the NNX form of (its ``apply`` takes :func:`linen_params`)."""
        return self.to_nnx__module

    # -- calls ----------------------------------------------------------------

    def __call__(self, *args: Any, rngs: nnx.Rngs | Array | None = None, method: Any = None, mutable: Any = None,
                 **kwargs: Any) -> Any:
        if kwargs.get("decode"):
            if not jax.tree.leaves(nnx.state(self, nnx.Cache)):
                raise ValueError(f"zoo.nnx.{type(self).__name__}: decode=True needs a cache; call init_cache(...) "
                                 "first")
            mutable = ["cache"] if mutable is None else mutable
        if rngs is None and kwargs.get("deterministic") is False:
            rngs = self._dropout_rngs()
        return super().__call__(*args, rngs=rngs, method=method, mutable=mutable, **kwargs)

    def _dropout_rngs(self) -> nnx.Rngs | None:
        """The construction ``rngs``; with only a default stream, that stream as ``'dropout'``."""
        own = self.to_nnx__rngs
        if own is None:
            return None
        names = {name for name, _ in own.items()}
        if "dropout" in names or "default" not in names:
            return own
        return nnx.Rngs(dropout=own.default())

    def _init_cache_from(self, cache: Mapping) -> None:
        """Hold ``cache`` (linen's 'cache' collection) as zeroed ``nnx.Cache`` variables."""
        self._set_variables({"cache": jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache)},
                            f"zoo.nnx.{type(self).__name__}")


def bridge(module: nn.Module, *example_args: Any, rngs: nnx.Rngs | int | None = None, params: Any = None,
           **example_kwargs: Any) -> Bridged:
    """Any zoo (or other linen) module as an NNX module, initialised on example inputs.

    ``zoo.nnx.bridge(zoo.Encoder(cfg), jnp.zeros((1, 8, 64)), rngs=nnx.Rngs(0))``;
    ``params=`` starts from linen's params instead.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> x = jnp.ones((2, 4, 8))                                   # example inputs (B, T, D)
      >>> ffn = zoo.FeedForward(zoo.TransformerConfig(mlp_dim=32))   # any linen module
      >>> model = nnx.eval_shape(lambda: zoo.nnx.bridge(ffn, x, rngs=nnx.Rngs(0)))   # shapes only
      >>> type(model).__name__, nnx.eval_shape(lambda m, x: m(x), model, x).shape
      ('Bridged', (2, 4, 8))
    """
    return Bridged(module, *example_args, rngs=rngs, params=params, **example_kwargs)


def linen_params(model: nnx.Module) -> dict[str, Any]:
    """The linen ``params`` of an NNX model of this module: plain arrays, the paths of the linen module's ``init``.

    ``model.linen_module.apply({"params": linen_params(model)}, x)`` gives ``model(x)``.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.GPT(config, rngs=nnx.Rngs(0)))   # shapes only
      >>> params = zoo.nnx.linen_params(model)                      # linen's names and nesting
      >>> sorted(params), params["wte"]["embedding"].shape
      (['decoder', 'wpe', 'wte'], (257, 16))
    """
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def load_linen_params(model: nnx.Module, params: Any) -> nnx.Module:
    """Put linen ``params`` (boxed or not, or a variables dict) into ``model`` in place; returns it.

    The paths and shapes must be those of the model's own parameters; a
    ``ValueError`` names the first that differs.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> cell = zoo.nnx.LSTMCell(3, 8, rngs=nnx.Rngs(0))
      >>> params = {name: np.full(p.shape, 0.5, np.float32) for name, p in zoo.nnx.linen_params(cell).items()}
      >>> cell = zoo.nnx.load_linen_params(cell, params)   # e.g. a linen model's params (boxed or not)
      >>> float(zoo.nnx.linen_params(cell)["input_kernel"].mean())
      0.5
    """
    where = f"load_linen_params({type(model).__name__})"
    params = _unwrap_params(params, where)
    state = nnx.state(model, nnx.Param)
    _check_same_tree(params, nnx.to_pure_dict(state), where)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    nnx.update(model, state)
    return model


# ---------------------------------------------------------------------------
# recurrent cells and layers


class _Cell(Bridged):
    """A zoo cell as NNX: ``(carry, x) -> (carry, y)``, with ``nnx.LSTMCell``'s constructor."""

    linen_class: ClassVar[type[_cells.RecurrentCell]]

    def __init__(self, in_features: int, hidden_features: int, *, rngs: nnx.Rngs | int | None = None,
                 params: Any = None, **attrs: Any):
        """``attrs`` are the linen cell's other attributes (``dtype``, ``kernel_init``, ``forget_bias``, ...)."""
        module = self.linen_class(features=hidden_features, **attrs)
        x = jnp.zeros((1, in_features), module.param_dtype)
        super().__init__(module, module.initialize_carry(None, x.shape), x, rngs=rngs, params=params)

    @property
    def in_features(self) -> int:
        return self.input_kernel.shape[0]

    @property
    def hidden_features(self) -> int:
        return self.to_nnx__module.features

    def initialize_carry(self, input_shape: tuple[int, ...], rngs: Any = None) -> Any:
        """Zero carry for inputs of shape ``(batch..., in_features)`` (``nnx.LSTMCell``'s signature)."""
        return self.to_nnx__module.initialize_carry(None, tuple(input_shape))


class SimpleRNNCell(_Cell):
    """:class:`zoo.SimpleRNNCell` (Elman) as NNX.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> cell = nnx.eval_shape(lambda: zoo.nnx.SimpleRNNCell(3, 8, rngs=nnx.Rngs(0)))   # shapes only
      >>> rnn = zoo.nnx.RNN(cell)
      >>> nnx.eval_shape(lambda r, x: r(x), rnn, jnp.ones((2, 4, 3))).shape   # (batch, seq, hidden)
      (2, 4, 8)
    """

    linen_class = _cells.SimpleRNNCell


class LSTMCell(_Cell):
    """:class:`zoo.LSTMCell` as NNX; carry ``(c, h)``.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> cell = zoo.nnx.LSTMCell(3, 8, rngs=nnx.Rngs(0))          # in_features, hidden_features
      >>> sorted(zoo.nnx.linen_params(cell))
      ['bias', 'input_kernel', 'recurrent_kernel']
      >>> rnn = zoo.nnx.RNN(cell)                                   # the cell's parameters
      >>> rnn(jnp.ones((2, 4, 3))).shape                            # (batch, seq, hidden)
      (2, 4, 8)
    """

    linen_class = _cells.LSTMCell


class GRUCell(_Cell):
    """:class:`zoo.GRUCell` as NNX (``reset_after=True``, torch's form, by default).

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> cell = nnx.eval_shape(lambda: zoo.nnx.GRUCell(3, 8, rngs=nnx.Rngs(0)))   # shapes only
      >>> {name: p.shape for name, p in zoo.nnx.linen_params(cell).items()}
      {'bias': (24,), 'input_kernel': (3, 24), 'recurrent_bias': (8,), 'recurrent_kernel': (8, 24)}
    """

    linen_class = _cells.GRUCell


class MinGRUCell(_Cell):
    """:class:`zoo.MinGRUCell` as NNX.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> cell = nnx.eval_shape(lambda: zoo.nnx.MinGRUCell(3, 8, rngs=nnx.Rngs(0)))   # shapes only
      >>> {name: p.shape for name, p in zoo.nnx.linen_params(cell).items()}      # no recurrent kernel
      {'bias': (16,), 'input_kernel': (3, 16)}
    """

    linen_class = _cells.MinGRUCell


class MinLSTMCell(_Cell):
    """:class:`zoo.MinLSTMCell` as NNX.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> rnn = nnx.eval_shape(lambda: zoo.nnx.RNN(zoo.nnx.MinLSTMCell(3, 8, rngs=nnx.Rngs(0))))
      >>> nnx.eval_shape(lambda r, x: r(x), rnn, jnp.ones((2, 4, 3))).shape
      (2, 4, 8)
    """

    linen_class = _cells.MinLSTMCell


_CELL_CLASSES = {c.linen_class: c for c in (SimpleRNNCell, LSTMCell, GRUCell, MinGRUCell, MinLSTMCell)}


def _nnx_cell(cell: Any, in_features: int | None, rngs: nnx.Rngs | int | None, where: str) -> _Cell:
    if isinstance(cell, _Cell):
        return cell
    if isinstance(cell, _cells.RecurrentCell):
        if in_features is None or rngs is None:
            raise ValueError(f"{where}: a linen cell ({type(cell).__name__}) needs in_features and rngs to create "
                             f"its parameters; or pass zoo.nnx.{type(cell).__name__}(in_features, "
                             f"{cell.features}, rngs=...)")
        attrs = {f.name: getattr(cell, f.name) for f in dataclasses.fields(cell)
                 if f.name not in ("features", "parent", "name")}
        nnx_class = _CELL_CLASSES.get(type(cell))
        if nnx_class is None:  # a subclass of zoo's: wrap it as it is
            nnx_class = type(f"{type(cell).__name__}NNX", (_Cell,), {"linen_class": type(cell)})
        return nnx_class(in_features, cell.features, rngs=rngs, **attrs)
    raise TypeError(f"{where}: cell must be a zoo.nnx cell (zoo.nnx.LSTMCell, ...) or a linen zoo cell "
                    f"(zoo.LSTMCell, ...), got {type(cell).__module__}.{type(cell).__name__}; flax.nnx's own cells "
                    "have no fused sequence kernel: run them with flax.nnx.RNN")


class RNN(nnx.Module):
    """:class:`zoo.RNN` as NNX: runs ``cell`` over the time axis; the parameters are the cell's.

    ``cell``: a cell of this module (``zoo.nnx.LSTMCell(in_features,
    hidden_features, rngs=...)``), or a linen zoo cell with ``in_features``
    and ``rngs`` (wrapped into one). The call is :class:`zoo.RNN`'s:
    ``rnn(x, initial_carry=..., seq_lengths=..., return_carry=...)``.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> rnn = nnx.eval_shape(lambda: zoo.nnx.RNN(zoo.GRUCell(8), in_features=3, rngs=nnx.Rngs(0)))
      >>> x, lengths = jnp.ones((2, 4, 3)), jnp.array([4, 2])   # (batch, seq, in), (batch,)
      >>> carry, y = nnx.eval_shape(lambda r, x: r(x, seq_lengths=lengths, return_carry=True), rnn, x)
      >>> carry.shape, y.shape
      ((2, 8), (2, 4, 8))
    """

    def __init__(self, cell: Any, *, time_major: bool = False, return_carry: bool = False, reverse: bool = False,
                 keep_order: bool = False, unroll: int = 1, in_features: int | None = None,
                 rngs: nnx.Rngs | int | None = None):
        self.cell = _nnx_cell(cell, in_features, _rngs(rngs), "zoo.nnx.RNN")
        self.linen_module = _recurrent.RNN(self.cell.linen_module, time_major=time_major, return_carry=return_carry,
                                           reverse=reverse, keep_order=keep_order, unroll=unroll)

    def __call__(self, inputs: Array, **kwargs: Any) -> Any:
        return self.linen_module.apply({"params": linen_params(self)}, inputs, **kwargs)


class Bidirectional(nnx.Module):
    """:class:`zoo.Bidirectional` as NNX: two :class:`RNN` (forward, backward), outputs merged.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> def make():
      ...     return zoo.nnx.Bidirectional(zoo.nnx.RNN(zoo.nnx.GRUCell(3, 8, rngs=nnx.Rngs(0))),
      ...                                  zoo.nnx.RNN(zoo.nnx.GRUCell(3, 8, rngs=nnx.Rngs(1))))
      ...
      >>> birnn = nnx.eval_shape(make)                              # shapes only; make() builds it
      >>> nnx.eval_shape(lambda m, x: m(x), birnn, jnp.ones((2, 4, 3))).shape   # both directions concatenated
      (2, 4, 16)
    """

    def __init__(self, forward_rnn: RNN, backward_rnn: RNN, *,
                 merge_fn: Callable[[Array, Array], Array] = _recurrent._concatenate, time_major: bool = False,
                 return_carry: bool = False):
        for name, rnn in (("forward_rnn", forward_rnn), ("backward_rnn", backward_rnn)):
            if not isinstance(rnn, RNN):
                raise TypeError(f"zoo.nnx.Bidirectional: {name} must be a zoo.nnx.RNN, got {type(rnn).__name__}")
        self.forward_rnn, self.backward_rnn = forward_rnn, backward_rnn
        self.linen_module = _recurrent.Bidirectional(forward_rnn.linen_module, backward_rnn.linen_module,
                                                     merge_fn=merge_fn, time_major=time_major,
                                                     return_carry=return_carry)

    def __call__(self, inputs: Array, **kwargs: Any) -> Any:
        return self.linen_module.apply({"params": linen_params(self)}, inputs, **kwargs)


class RNNStack(Bridged):
    """:class:`zoo.RNNStack` as NNX: ``cell`` (a linen zoo cell, the template of every layer) over ``in_features``.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> stack = nnx.eval_shape(lambda: zoo.nnx.RNNStack(zoo.LSTMCell(8), 3, num_layers=2, rngs=nnx.Rngs(0)))
      >>> nnx.eval_shape(lambda m, x: m(x), stack, jnp.ones((2, 4, 3))).shape   # shapes only
      (2, 4, 8)
    """

    def __init__(self, cell: _cells.RecurrentCell, in_features: int, *, num_layers: int = 1,
                 dropout_rate: float = 0.0, bidirectional: bool = False, unroll: int = 1,
                 rngs: nnx.Rngs | int | None = None, params: Any = None):
        if not isinstance(cell, _cells.RecurrentCell):
            raise TypeError(f"zoo.nnx.RNNStack: cell must be a linen zoo cell (zoo.LSTMCell(8), ...), the template "
                            f"of every layer, got {type(cell).__name__}")
        module = _recurrent.RNNStack(cell, num_layers=num_layers, dropout_rate=dropout_rate,
                                     bidirectional=bidirectional, unroll=unroll)
        super().__init__(module, jnp.zeros((1, 1, in_features), cell.param_dtype), rngs=rngs, params=params)


# ---------------------------------------------------------------------------
# attention and Transformer blocks


class MultiHeadAttention(Bridged):
    """:class:`zoo.MultiHeadAttention` as NNX over inputs of ``in_features``.

    ``attrs`` are the linen module's (``cross_attention``, ``num_kv_heads``,
    ``rope_base``, ...); a cross-attention module reads ``kv_features``
    (default ``in_features``). Decoding: ``init_cache(batch, length)``, then
    ``mha(x, decode=True)``.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> mha = nnx.eval_shape(lambda: zoo.nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0)))   # N, in_features
      >>> x = jnp.ones((2, 4, 8))                                   # (B, T, D)
      >>> nnx.eval_shape(lambda m, x: m(x, is_causal=True), mha, x).shape   # shapes only; mha(x) computes
      (2, 4, 8)
    """

    def __init__(self, num_heads: int, in_features: int, *, kv_features: int | None = None,
                 rngs: nnx.Rngs | int | None = None, params: Any = None, **attrs: Any):
        module = _multihead.MultiHeadAttention(num_heads, **attrs)
        x = jnp.zeros((1, 1, in_features), module.param_dtype)
        context = (jnp.zeros((1, 1, kv_features or in_features), module.param_dtype),) if module.cross_attention else ()
        super().__init__(module, x, *context, rngs=rngs, params=params)

    def init_cache(self, batch: int, length: int) -> None:
        """Zero caches for ``batch`` rows and ``length`` positions (cross-attention: encoder positions)."""
        m = self.to_nnx__module
        x = jnp.zeros((batch, length, self._in_features()), m.param_dtype)
        args = (x, jnp.zeros((batch, length, self._kv_features()), m.param_dtype)) if m.cross_attention else (x,)
        self._init_cache_from(jax.eval_shape(
            lambda: m.init(jax.random.key(0), *args, decode=True))["cache"])

    def _in_features(self) -> int:
        kernel = self.query_kernel if "query_kernel" in vars(self) else self.qkv_kernel
        return kernel.shape[0]

    def _kv_features(self) -> int:
        for name in ("key_value_kernel", "key_kernel", "qkv_kernel"):
            if name in vars(self):
                return getattr(self, name).shape[0]
        raise AssertionError("no key projection")


class TransformerBlock(Bridged):
    """:class:`zoo.TransformerBlock` as NNX over inputs of ``in_features`` (``context_features`` for cross-attention).

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.TransformerConfig(num_heads=2, mlp_dim=32)
      >>> block = nnx.eval_shape(lambda: zoo.nnx.TransformerBlock(config, 8, causal=True, rngs=nnx.Rngs(0)))
      >>> nnx.eval_shape(lambda m, x: m(x), block, jnp.ones((2, 4, 8))).shape   # shapes only
      (2, 4, 8)
    """

    def __init__(self, config: _transformer.TransformerConfig, in_features: int, *, causal: bool = False,
                 cross_attention: bool = False, context_features: int | None = None,
                 rngs: nnx.Rngs | int | None = None, params: Any = None):
        module = _transformer.TransformerBlock(config, causal=causal, cross_attention=cross_attention)
        x = jnp.zeros((1, 1, in_features), config.param_dtype)
        context = jnp.zeros((1, 1, context_features or in_features), config.param_dtype) if cross_attention else None
        super().__init__(module, x, None, None, context, rngs=rngs, params=params)


# ---------------------------------------------------------------------------
# models


class GPT(Bridged):
    """:class:`zoo.GPT` as NNX: ``GPT(config, rngs=nnx.Rngs(0))``; ``model(ids)`` -> logits (B, T, V).

    Decoding: ``model.init_cache(batch, length)``, then
    ``model(ids, decode=True)`` with the prompt and one token at a time.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.GPT(config, rngs=nnx.Rngs(0)))   # shapes only
      >>> ids = jnp.array([[72, 105, 33, 10]])                      # (B, T)
      >>> nnx.eval_shape(lambda m, x: m(x), model, ids).shape       # model(ids): logits (B, T, vocab_size)
      (1, 4, 257)
    """

    def __init__(self, config: _gpt.GPTConfig, *, rngs: nnx.Rngs | int | None = None, params: Any = None):
        super().__init__(_gpt.GPT(config), jnp.zeros((1, 1), jnp.int32), rngs=rngs, params=params)

    @property
    def config(self) -> _gpt.GPTConfig:
        return self.to_nnx__module.config

    def init_cache(self, batch: int, length: int) -> None:
        """Zero KV caches for ``batch`` rows of ``length`` positions (:func:`zoo.init_cache`)."""
        self._init_cache_from(_gpt_cache(self.to_nnx__module, batch, length))


class RNNLM(Bridged):
    """:class:`zoo.RNNLM` as NNX: ``model(ids, return_carry=...)``.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="gru", features=16, num_layers=2, block_size=8)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.RNNLM(config, rngs=nnx.Rngs(0)))   # shapes only
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.array([[72, 105, 33]])).shape
      (1, 3, 257)
    """

    def __init__(self, config: _rnn_lm.RNNLMConfig, *, rngs: nnx.Rngs | int | None = None, params: Any = None):
        super().__init__(_rnn_lm.RNNLM(config), jnp.zeros((1, 1), jnp.int32), rngs=rngs, params=params)

    @property
    def config(self) -> _rnn_lm.RNNLMConfig:
        return self.to_nnx__module.config


class _BERTModel(Bridged):
    """A BERT model of zoo as NNX: ``(config, *, rngs)``; the call is the linen model's."""

    linen_class: ClassVar[type[nn.Module]]

    def __init__(self, config: _bert.BERTConfig, *, rngs: nnx.Rngs | int | None = None, params: Any = None):
        super().__init__(self.linen_class(config), jnp.zeros((1, 1), jnp.int32), rngs=rngs, params=params)

    @property
    def config(self) -> _bert.BERTConfig:
        return self.to_nnx__module.config


class BERT(_BERTModel):
    """:class:`zoo.BERT` (the encoder) as NNX: ``model(ids, segment_ids=, seq_lengths=)``.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.BERT(config, rngs=nnx.Rngs(0)))   # shapes only
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.array([[2, 10, 11, 3]])).shape   # (B, T, D)
      (1, 4, 16)
    """

    linen_class = _bert.BERT


class BERTForMaskedLM(_BERTModel):
    """:class:`zoo.BERTForMaskedLM` as NNX: ``model(ids, masked_positions=...)`` -> logits.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.BERTForMaskedLM(config, rngs=nnx.Rngs(0)))   # shapes only
      >>> positions = jnp.array([[2]])                              # (B, P)
      >>> ids = jnp.array([[2, 10, 4, 3]])                          # (B, T)
      >>> nnx.eval_shape(lambda m, x: m(x, masked_positions=positions), model, ids).shape
      (1, 1, 64)
    """

    linen_class = _bert.BERTForMaskedLM


class BERTForPreTraining(_BERTModel):
    """:class:`zoo.BERTForPreTraining` as NNX.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.BERTForPreTraining(config, rngs=nnx.Rngs(0)))   # shapes only
      >>> mlm, nsp = nnx.eval_shape(lambda m, x: m(x), model, jnp.array([[2, 10, 3, 11, 3]]))
      >>> mlm.shape, nsp.shape
      ((1, 5, 64), (1, 2))
    """

    linen_class = _bert.BERTForPreTraining


class BERTForSequenceClassification(_BERTModel):
    """:class:`zoo.BERTForSequenceClassification` as NNX.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16, num_labels=3)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.BERTForSequenceClassification(config, rngs=nnx.Rngs(0)))
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.array([[2, 10, 11, 3]])).shape   # (B, num_labels)
      (1, 3)
    """

    linen_class = _bert.BERTForSequenceClassification


class BERTForTokenClassification(_BERTModel):
    """:class:`zoo.BERTForTokenClassification` as NNX.

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16, num_labels=5)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.BERTForTokenClassification(config, rngs=nnx.Rngs(0)))
      >>> nnx.eval_shape(lambda m, x: m(x), model, jnp.array([[2, 10, 11, 3]])).shape   # (B, T, num_labels)
      (1, 4, 5)
    """

    linen_class = _bert.BERTForTokenClassification


class Seq2SeqTransformer(Bridged):
    """:class:`zoo.Seq2SeqTransformer` as NNX: ``model(src, tgt_in, src_lengths=, tgt_lengths=)``.

    ``model.encode(src)`` and ``model.decode(tgt_in, encoded)`` work as in
    linen. Decoding: ``model.init_cache(batch, source_len, cache_len)``, then
    ``model.decode(tgt, encoded, decode=True)`` (the first call stores the
    encoder's keys and values; later ones may pass ``encoded=None``).

    Examples:
      >>> import zoo.nnx
      >>> from flax import nnx
      >>> config = zoo.Seq2SeqConfig(vocab_size=32, max_source_len=8, max_target_len=8, num_encoder_layers=1,
      ...                            num_decoder_layers=1, num_heads=2, features=16, bos_id=1, eos_id=2)
      >>> model = nnx.eval_shape(lambda: zoo.nnx.Seq2SeqTransformer(config, rngs=nnx.Rngs(0)))   # shapes only
      >>> src, tgt_in = jnp.array([[5, 6, 7, 2]]), jnp.array([[1, 8, 9]])
      >>> nnx.eval_shape(lambda m, s, t: m(s, t), model, src, tgt_in).shape   # (B, T, vocab_size)
      (1, 3, 32)
    """

    def __init__(self, config: _seq2seq.Seq2SeqConfig, *, rngs: nnx.Rngs | int | None = None, params: Any = None):
        ids = jnp.zeros((1, 1), jnp.int32)
        super().__init__(_seq2seq.Seq2SeqTransformer(config), ids, ids, rngs=rngs, params=params)

    @property
    def config(self) -> _seq2seq.Seq2SeqConfig:
        return self.to_nnx__module.config

    def init_cache(self, batch: int, source_len: int, cache_len: int) -> None:
        """Zero caches for ``batch`` rows, sources of ``source_len``, ``cache_len`` target positions."""
        self._init_cache_from(_seq2seq_cache(self.to_nnx__module, batch, source_len, cache_len))
