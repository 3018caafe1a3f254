"""``linear(x, w)``: x (..., D_in) @ w (D_in, D_out), with a backward pass laid out for XLA:CPU.

On the CPU (chosen when the program is lowered, :mod:`zoo.layers.platform`)
the backward pass below is used; on GPU and TPU ``linear`` is plain
``x @ w`` with JAX's own backward pass.

The weight gradient of a projection is ``dW = X^T G`` with X (N, D_in) the
inputs and G (N, D_out) the output gradient, both with the N = batch x
sequence rows first. Left to itself, XLA:CPU feeds that matmul a transposed
copy of whichever operand its layout assignment picks, and it tends to pick
the large one, often fused with the elementwise backward that produced it
(a transposed write, several times slower than the matmul itself: 7 ms per
layer for the MLP of a 4 x 128 GPT, a quarter of its training step). Here
the backward pass transposes the *smaller* operand explicitly and keeps the
product in canonical (rows x inner) @ (inner x cols) form:

    D_in <= D_out:  dW = (X^T) G
    D_in >  D_out:  dW = ((G^T) X)^T      (transposing the small (D_out, D_in) result)

Values are those of ``x @ w``; it works under ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.layers.partitioning import gathered
from zoo.layers.platform import cpu_or

try:  # public since jax 0.4.14; a JAX without it still imports zoo (zero tangents then cost a matmul)
    from jax.custom_derivatives import SymbolicZero
except ImportError:  # pragma: no cover
    SymbolicZero = ()

__all__ = ["linear", "Linear", "einsum_acc"]


@jax.custom_vjp
def _linear_cpu(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.matmul(x, w)


def _fwd(x, w):
    return jnp.matmul(x, w), (x, w)


def _bwd(res, g):
    x, w = res
    d_in, d_out = w.shape
    x2 = x.reshape(-1, d_in)  # (N, D_in)
    g2 = g.reshape(-1, d_out)  # (N, D_out)
    dx = jnp.matmul(g, w.T)  # (..., D_in); w is small
    if d_in <= d_out:
        xt = jax.lax.optimization_barrier(x2.T)  # (D_in, N), materialised: the small transpose
        dw = jnp.matmul(xt, g2)  # (D_in, D_out)
    else:
        gt = jax.lax.optimization_barrier(g2.T)  # (D_out, N)
        dw = jnp.matmul(gt, x2).T  # (D_out, D_in) -> (D_in, D_out)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_linear_cpu.defvjp(_fwd, _bwd)


def _matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x (..., D_in) @ w (D_in, D_out) -> (..., D_out)."""
    return jnp.matmul(x, w)


linear = cpu_or(_linear_cpu, _matmul, name="linear")


def einsum_acc(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """``jnp.einsum(spec, a, b)`` of two arrays of one compute dtype, the result in at least float32, and
    the derivative's matmuls in the compute dtype too.

    ``preferred_element_type=float32`` alone keeps a bfloat16 product's sum
    in float32, but its float32 cotangent then promotes the other operand:
    JAX's backward runs both matmuls in float32 (found by exporting the
    bfloat16 training steps for CUDA, tests/test_lowering.py), at a fraction
    of a GPU's bfloat16 rate. Here the tangents (forward mode) are products
    in the compute dtype, so their transposes (the backward pass) round the
    cotangent to the compute dtype first, as the forward's inputs were; a
    custom JVP, not a VJP, so ``jax.jvp`` and higher derivatives still work.
    With float32 (or wider) inputs this is plain ``einsum``.
    """
    acc = jnp.promote_types(a.dtype, jnp.float32)
    if acc == a.dtype:
        return jnp.einsum(spec, a, b, preferred_element_type=acc)
    return _einsum_narrow(spec, a, b)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _einsum_narrow(spec, a, b):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.promote_types(a.dtype, jnp.float32))


def _einsum_narrow_jvp(spec, primals, tangents):
    a, b = primals
    ta, tb = tangents
    out = _einsum_narrow(spec, a, b)
    terms = []  # products in the compute dtype; a symbolic zero tangent costs no matmul
    if not isinstance(ta, SymbolicZero):
        terms.append(jnp.einsum(spec, ta.astype(a.dtype), b))
    if not isinstance(tb, SymbolicZero):
        terms.append(jnp.einsum(spec, a, tb.astype(b.dtype)))
    if not terms:
        return out, jnp.zeros_like(out)
    return out, functools.reduce(jnp.add, terms).astype(out.dtype)


_einsum_narrow.defjvp(_einsum_narrow_jvp, symbolic_zeros=SymbolicZero != ())


class Linear(nn.Module):
    """A dense layer on :func:`linear`: params ``kernel`` (D_in, features) and ``bias`` (features,).

    ``axes`` are the kernel's logical axis names (the bias takes the last); under a sharding context the
    kernel is gathered to its layout in use (:func:`zoo.layers.partitioning.gathered`).
    """

    features: int
    axes: tuple[str, str]
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(self.kernel_init, self.axes),
            (x.shape[-1], self.features), self.param_dtype,
        )
        bias = None
        if self.use_bias:
            bias = self.param(
                "bias", nn.with_logical_partitioning(self.bias_init, self.axes[-1:]), (self.features,),
                self.param_dtype,
            )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = gathered(linear, x, kernel, self.axes)  # (..., features)
        return y if bias is None else y + bias
