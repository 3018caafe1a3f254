"""Sequence drivers: ``RNN`` runs a cell over time; ``Bidirectional``; ``RNNStack``.

``RNN`` has the call conventions of ``flax.linen.RNN``, so code written
against Flax's recurrent API runs with only the import changed (parameter
names inside the cell differ)::

    rnn = zoo.RNN(zoo.LSTMCell(features=256))
    params = rnn.init(key, x)                                # x: (batch, seq, in)
    y = rnn.apply(params, x, seq_lengths=lengths)            # (batch, seq, 256)
    carry, y = rnn.apply(params, x, return_carry=True)

Inputs are batch-major ``(batch..., seq, features)`` (``time_major=True``
for ``(seq, batch..., features)``); any number of batch axes, or none.

Differences from ``flax.linen.RNN``, all deliberate:

* with ``seq_lengths``, outputs past a sequence's length are zero, and the
  returned carry is the state at its last valid step, so a padded batch gives
  exactly what each sequence gives alone;
* shapes are checked before tracing and bad ones raise ``ValueError`` naming
  the argument (never a silent broadcast);
* ``seq_lengths`` values must lie in ``[0, seq]``: checked eagerly when they
  are concrete; under ``jit`` they are abstract, and the check runs only in
  the opt-in checked mode (:func:`zoo.checked`, i.e. ``checkify``);
* it drives zoo's cells only: they compute the input projections of all steps
  in one matmul and run a custom-VJP or associative-scan kernel
  (``zoo/layers/scan.py``) instead of lifting the cell with ``nn.scan``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str
from zoo.layers.scan import flip_sequences, lengths_to_mask

Array = jax.Array

__all__ = ["RNN", "Bidirectional", "RNNStack"]


def _first(*values):
    for v in values:
        if v is not None:
            return v
    return None


def _check_seq_lengths(seq_lengths: Any, batch_shape: tuple[int, ...], num_steps: int) -> Array:
    if not hasattr(seq_lengths, "dtype"):  # a list or tuple of Python numbers
        seq_lengths = np.asarray(seq_lengths)
    shape = tuple(jnp.shape(seq_lengths))
    if shape != batch_shape:
        raise ValueError(
            f"RNN: seq_lengths has shape {shape_str(shape)}, expected the batch shape of the inputs "
            f"{shape_str(batch_shape)}"
        )
    dtype = jnp.result_type(seq_lengths)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"RNN: seq_lengths must hold integers, got dtype {dtype}")
    check_range("seq_lengths", seq_lengths, 0, num_steps, "sequence lengths no longer than the inputs")
    return jnp.asarray(seq_lengths)


def _check_carry(carry: Any, expected: Any, what: str) -> None:
    got_def, want_def = jax.tree.structure(carry), jax.tree.structure(expected)
    if got_def != want_def:
        raise ValueError(f"RNN: {what} has structure {got_def}, expected {want_def}")
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(expected)):
        if tuple(jnp.shape(got)) != tuple(want.shape):
            raise ValueError(
                f"RNN: {what} has a leaf of shape {shape_str(jnp.shape(got))}, expected "
                f"{shape_str(want.shape)} (batch shape of the inputs + (features,))"
            )


class RNN(nn.Module):
    """Run a zoo cell over the time axis of ``inputs``.

    Attributes:
      cell: a zoo cell (``LSTMCell``, ``GRUCell``, ``SimpleRNNCell``,
        ``MinGRUCell``, ``MinLSTMCell``).
      time_major: inputs are ``(seq, batch..., features)``.
      return_carry: return ``(carry, outputs)`` instead of ``outputs``.
      reverse: run from the last step to the first. With ``seq_lengths``,
        each sequence is reversed within its length, so padding stays at the
        end.
      keep_order: with ``reverse``, flip the outputs back to input order.
      unroll: ``lax.scan`` unroll factor of the sequential loops.

    Examples:
      >>> rnn = zoo.RNN(zoo.LSTMCell(features=8))
      >>> x = jnp.ones((2, 4, 3))                          # (batch, seq, in)
      >>> params = rnn.init(jax.random.key(0), x)
      >>> rnn.apply(params, x).shape
      (2, 4, 8)
      >>> (c, h), y = rnn.apply(params, x, seq_lengths=jnp.array([4, 2]), return_carry=True)
      >>> bool((h == y[:, -1]).all()), bool((h[1] == y[1, 1]).all())  # the carry is at each row's length
      (False, True)
    """

    cell: nn.Module
    time_major: bool = False
    return_carry: bool = False
    reverse: bool = False
    keep_order: bool = False
    unroll: int = 1

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Any = None,
        init_key: Array | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ):
        """Run the cell over ``inputs``.

        Args:
          inputs: ``(batch..., seq, features)`` (or time-major).
          initial_carry: the cell's carry for the batch shape, e.g. ``(c, h)``
            of ``(batch..., hidden)`` arrays for an LSTM; zeros if None.
          init_key: passed to ``cell.initialize_carry`` when no carry is given.
          seq_lengths: integer ``(batch...)`` lengths in ``[0, seq]``; steps
            at and after a sequence's length are padding.
          return_carry, time_major, reverse, keep_order: override the
            attributes of the same names.

        Returns:
          outputs ``(batch..., seq, hidden)``, or ``(carry, outputs)``.
        """
        return_carry = _first(return_carry, self.return_carry)
        time_major = _first(time_major, self.time_major)
        reverse = _first(reverse, self.reverse)
        keep_order = _first(keep_order, self.keep_order)
        if not hasattr(self.cell, "run_sequence"):
            raise TypeError(
                f"RNN: cell must be a zoo cell (with run_sequence), got {type(self.cell).__name__}; "
                "for flax.linen cells use flax.linen.RNN"
            )

        inputs = jnp.asarray(inputs)
        layout = "(seq, batch..., features)" if time_major else "(batch..., seq, features)"
        if inputs.ndim < 2:
            raise ValueError(f"RNN: inputs must have shape {layout}, got shape {shape_str(inputs.shape)}")
        time_axis = 0 if time_major else inputs.ndim - 2
        x = jnp.moveaxis(inputs, time_axis, 0)  # (seq, batch..., features)
        num_steps, batch_shape, in_features = x.shape[0], tuple(x.shape[1:-1]), x.shape[-1]
        batch = math.prod(batch_shape)
        x = x.reshape(num_steps, batch, in_features)  # (seq, batch, features)

        lengths = None
        if seq_lengths is not None:
            lengths = _check_seq_lengths(seq_lengths, batch_shape, num_steps).reshape(batch)

        carry_input_shape = batch_shape + (in_features,)
        expected = jax.eval_shape(lambda: self.cell.initialize_carry(jax.random.key(0), carry_input_shape))
        if initial_carry is None:
            key = init_key if init_key is not None else jax.random.key(0)
            initial_carry = self.cell.initialize_carry(key, carry_input_shape)
        else:
            _check_carry(initial_carry, expected, "initial_carry")
        # Leaves (batch..., hidden) -> (batch, hidden)
        carry = jax.tree.map(lambda c: jnp.reshape(c, (batch, c.shape[-1])), initial_carry)

        mask = None if lengths is None else lengths_to_mask(lengths, num_steps)  # (seq, batch)
        if reverse:
            x = flip_sequences(x, lengths)
        if mask is not None:
            # Padding may hold any value, even inf/NaN. The cells mask their
            # outputs and carries, but the gradients of the input projection
            # and of the gates would still meet 0 * NaN = NaN on padded steps,
            # so zero the padded inputs before they reach the cell.
            x = jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))
        carry, ys = self.cell.run_sequence(carry, x, mask, self.unroll)  # ys: (seq, batch, hidden)
        if reverse and keep_order:
            ys = flip_sequences(ys, lengths)

        ys = ys.reshape((num_steps,) + batch_shape + ys.shape[-1:])  # (seq, batch..., hidden)
        ys = jnp.moveaxis(ys, 0, time_axis)
        carry = jax.tree.map(lambda c, e: c.reshape(e.shape), carry, expected)  # (batch..., hidden)
        return (carry, ys) if return_carry else ys


def _concatenate(a: Array, b: Array) -> Array:
    return jnp.concatenate([a, b], axis=-1)


class Bidirectional(nn.Module):
    """Run one RNN forward and another backward over the same inputs; merge outputs.

    Same interface as ``flax.linen.Bidirectional``: the carry is
    ``(forward_carry, backward_carry)`` and ``merge_fn`` (concatenation by
    default) combines the outputs, both in input order. With ``seq_lengths``
    the backward RNN reads each sequence from its last valid step.

    Examples:
      >>> birnn = zoo.Bidirectional(zoo.RNN(zoo.GRUCell(features=8)), zoo.RNN(zoo.GRUCell(features=8)))
      >>> x = jnp.ones((2, 4, 3))                        # (batch, seq, in)
      >>> params = jax.eval_shape(birnn.init, jax.random.key(0), x)   # shapes only; birnn.init makes them
      >>> lengths = jnp.array([4, 2])
      >>> jax.eval_shape(lambda p, x: birnn.apply(p, x, seq_lengths=lengths), params, x).shape
      (2, 4, 16)
    """

    forward_rnn: nn.Module
    backward_rnn: nn.Module
    merge_fn: Callable[[Array, Array], Array] = _concatenate
    time_major: bool = False
    return_carry: bool = False

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Any = None,
        init_key: Array | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,  # accepted for flax compatibility; ignored as in flax
        keep_order: bool | None = None,
    ):
        del reverse, keep_order
        return_carry = _first(return_carry, self.return_carry)
        time_major = _first(time_major, self.time_major)
        if init_key is not None:
            key_forward, key_backward = jax.random.split(init_key)
        else:
            key_forward = key_backward = None
        if initial_carry is not None:
            if not (isinstance(initial_carry, (tuple, list)) and len(initial_carry) == 2):
                raise ValueError(
                    "Bidirectional: initial_carry must be a pair (forward_carry, backward_carry), "
                    f"got {type(initial_carry).__name__}"
                )
            carry_forward, carry_backward = initial_carry
        else:
            carry_forward = carry_backward = None

        carry_forward, out_forward = self.forward_rnn(
            inputs, initial_carry=carry_forward, init_key=key_forward, seq_lengths=seq_lengths,
            return_carry=True, time_major=time_major, reverse=False,
        )
        carry_backward, out_backward = self.backward_rnn(
            inputs, initial_carry=carry_backward, init_key=key_backward, seq_lengths=seq_lengths,
            return_carry=True, time_major=time_major, reverse=True, keep_order=True,
        )
        outputs = self.merge_fn(out_forward, out_backward)
        carry = (carry_forward, carry_backward)
        return (carry, outputs) if return_carry else outputs


class RNNStack(nn.Module):
    """``num_layers`` recurrent layers, each reading the previous layer's outputs.

    Like ``torch.nn.LSTM(num_layers=..., dropout=..., bidirectional=...)``:
    dropout (rate ``dropout_rate``) is applied to the outputs of every layer
    but the last, when ``deterministic`` is False (needs a ``'dropout'``
    rng). Each layer gets its own copy of ``cell``; bidirectional layers
    concatenate both directions, so layers after the first read
    ``2 * features`` inputs.

    The carry is a list with one entry per layer (a ``(forward, backward)``
    pair per layer when bidirectional).

    Examples:
      >>> stack = zoo.RNNStack(zoo.LSTMCell(features=8), num_layers=2, bidirectional=True)
      >>> x = jnp.ones((2, 4, 3))                        # (batch, seq, in)
      >>> params = jax.eval_shape(stack.init, jax.random.key(0), x)   # shapes only; stack.init makes them
      >>> jax.eval_shape(stack.apply, params, x).shape   # both directions concatenated
      (2, 4, 16)
    """

    cell: nn.Module
    num_layers: int = 1
    dropout_rate: float = 0.0
    bidirectional: bool = False
    unroll: int = 1

    @nn.compact
    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: list | None = None,
        seq_lengths: Array | None = None,
        deterministic: bool = True,
        return_carry: bool = False,
    ):
        if self.num_layers < 1:
            raise ValueError(f"RNNStack: num_layers must be >= 1, got {self.num_layers}")
        if initial_carry is not None and len(initial_carry) != self.num_layers:
            raise ValueError(
                f"RNNStack: initial_carry must have one entry per layer ({self.num_layers}), "
                f"got {len(initial_carry)}"
            )
        x, carries = inputs, []
        for i in range(self.num_layers):
            carry_i = None if initial_carry is None else initial_carry[i]
            if self.bidirectional:
                layer = Bidirectional(
                    RNN(self.cell.clone(parent=None, name=None), unroll=self.unroll, name=f"layer_{i}_forward"),
                    RNN(self.cell.clone(parent=None, name=None), unroll=self.unroll, name=f"layer_{i}_backward"),
                )
            else:
                layer = RNN(self.cell.clone(parent=None, name=None), unroll=self.unroll, name=f"layer_{i}")
            carry_i, x = layer(x, initial_carry=carry_i, seq_lengths=seq_lengths, return_carry=True)
            carries.append(carry_i)
            if i < self.num_layers - 1 and self.dropout_rate > 0:
                x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        return (carries, x) if return_carry else x
