"""Choices measured on one backend, applied on that backend only: the one place zoo picks per platform.

A trick that helps XLA:CPU can hurt elsewhere: the backward passes below end
in ``optimization_barrier``, which on GPU and TPU blocks the fusions their
compilers rely on. So each is chosen when the program is lowered, with
``jax.lax.platform_dependent``: a program lowered (or exported with
``jax.export``) for CUDA or TPU holds only the plain version, even on a
machine whose default backend is the CPU (``jax.default_backend()`` would
say ``cpu`` there, so it cannot decide this).

The CPU versions and their measurements (2-core AMD EPYC, jax 0.10.2):

* :func:`linear`'s backward pass transposes the smaller operand of the
  weight-gradient matmul explicitly: left alone, XLA:CPU fused the transposed
  copy of the large operand into the elementwise backward that produced it
  (7 ms per layer for the MLP of a 4 x 128 GPT, a quarter of its step).
* the GELU's backward pass is materialised before the weight-gradient matmul
  reads it, for the same reason (``gelu`` and ``gelu_tanh`` in
  :data:`zoo.layers.transformer.ACTIVATIONS`).

docs/cpu.md gives the A/B figures and the command that measures them
(``benchmarks/cpu_tricks.py``). For such an A/B, the environment variable
``ZOO_CPU_PLAIN`` (comma-separated names: ``linear``, ``gelu``, and
``linear_recurrence``: the default method of :func:`zoo.linear_recurrence`)
makes the CPU take the plain version of the named tricks too; it is read
when zoo is imported (``linear_recurrence``: when a program is traced).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax

__all__ = ["cpu_or"]


def cpu_or(cpu: Callable, other: Callable, *, name: str) -> Callable:
    """A function that is ``cpu`` in a program lowered for the CPU and ``other`` on every other platform.

    Both take and return the same arrays; ``other`` is the plain version. The
    choice is made at lowering time (``jax.lax.platform_dependent``), so it
    follows the platform a program is compiled or exported for. ``name`` is
    the trick's name in ``ZOO_CPU_PLAIN``, which turns it off on the CPU too.
    """
    if name in os.environ.get("ZOO_CPU_PLAIN", "").split(","):
        return other

    def choose(*args):
        return jax.lax.platform_dependent(*args, cpu=cpu, default=other)

    choose.__name__ = getattr(other, "__name__", "choose")
    choose.__doc__ = other.__doc__
    return choose
