"""Autoregressive generation for zoo's language models: GPT with a KV cache, recurrent LMs with their state.

    tokens = zoo.generate(model, params, prompt_ids, max_new_tokens=100,
                          temperature=0.8, top_k=50, rng=jax.random.key(0))

Both kinds run the same two compiled programs: a *prefill* that reads the
whole (right-padded) prompt at once, and a *decode loop* (``lax.scan``, one
compiled step) that feeds back one sampled token per row. GPT's state is a
fixed-size KV cache of ``prompt length + max_new_tokens`` positions (so the
total must fit the context window, ``block_size``); a recurrent LM's state is
its carries, the same size at every step.

Sampling: ``temperature=0`` is greedy (argmax); otherwise logits are divided
by the temperature, then ``top_k`` keeps the k most likely tokens and
``top_p`` the smallest set whose probability reaches p (nucleus sampling).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str
from zoo.models.gpt import GPT
from zoo.models.rnn_lm import RNNLM

Array = jax.Array

__all__ = ["generate", "sample_logits", "init_cache"]


def sample_logits(
    logits: Array, rng: Array | None, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Array:
    """Draw token ids (B,) from float logits (B, V); ``temperature=0`` is argmax."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    neg = jnp.finfo(jnp.float32).min
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]  # (B, 1): the k-th largest
        logits = jnp.where(logits < kth, neg, logits)
    if top_p is not None:
        order = jnp.argsort(-logits, axis=-1)  # most likely first
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of the tokens ahead of each
        keep_sorted = before < top_p  # the first token is always kept
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, neg)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def init_cache(model: GPT, batch: int, length: int) -> Any:
    """A zero KV cache for ``batch`` rows of ``length`` positions (no parameters are initialised)."""
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((batch, length), jnp.int32), decode=True)
    )["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _check_prompt(model, prompt_ids, prompt_lengths, max_new_tokens):
    prompt_ids = np.asarray(prompt_ids) if not hasattr(prompt_ids, "dtype") else prompt_ids
    if prompt_ids.ndim == 1:
        prompt_ids = prompt_ids[None]
    if prompt_ids.ndim != 2 or prompt_ids.shape[1] < 1:
        raise ValueError(f"generate: prompt_ids must have shape (B, P) with P >= 1, got {shape_str(prompt_ids.shape)}")
    if not jnp.issubdtype(prompt_ids.dtype, jnp.integer):
        raise ValueError(f"generate: prompt_ids must hold integers, got dtype {prompt_ids.dtype}")
    b, p = prompt_ids.shape
    vocab = model.config.vocab_size
    check_range("generate: prompt_ids", prompt_ids, 0, vocab - 1, f"token ids of the vocabulary (size {vocab})")
    if prompt_lengths is None:
        prompt_lengths = np.full((b,), p, np.int32)
    prompt_lengths = np.asarray(prompt_lengths)
    if prompt_lengths.shape != (b,):
        raise ValueError(f"generate: prompt_lengths has shape {shape_str(prompt_lengths.shape)}, expected ({b},)")
    check_range("generate: prompt_lengths", prompt_lengths, 1, p, "prompt lengths")
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    if isinstance(model, GPT) and p + max_new_tokens > model.config.block_size:
        raise ValueError(
            f"generate: prompt length {p} + max_new_tokens {max_new_tokens} = {p + max_new_tokens} exceeds "
            f"the context window block_size={model.config.block_size}; shorten the prompt "
            "(e.g. keep its last tokens) or generate fewer tokens"
        )
    return jnp.asarray(prompt_ids, jnp.int32), jnp.asarray(prompt_lengths, jnp.int32)


def generate(
    model: GPT | RNNLM,
    params: Any,
    prompt_ids: Array,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    rng: Array | None = None,
    prompt_lengths: Array | None = None,
) -> Array:
    """Continue each prompt by ``max_new_tokens`` sampled tokens.

    Args:
      model: a :class:`zoo.GPT` or :class:`zoo.RNNLM`.
      params: its parameters (``variables['params']``, boxed or plain).
      prompt_ids: (B, P) or (P,) integer ids; rows shorter than P are
        right-padded and give their lengths in ``prompt_lengths``.
      max_new_tokens: tokens to add to every row.
      temperature, top_k, top_p: sampling (see the module docstring).
      rng: a ``jax.random`` key; required unless ``temperature == 0``.
      prompt_lengths: (B,) lengths of the prompts, default P.

    Returns:
      (B, max_new_tokens) int32: the new tokens of each row (row b continues
      from its own ``prompt_lengths[b]``).

    Token ids outside the vocabulary, bad lengths and a GPT prompt that
    would overflow the context window raise ``ValueError`` before anything
    is compiled.
    """
    prompt_ids, lengths = _check_prompt(model, prompt_ids, prompt_lengths, max_new_tokens)
    if temperature < 0:
        raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= model.config.vocab_size:
        raise ValueError(f"generate: top_k must be in [1, vocab_size={model.config.vocab_size}], got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
    if temperature != 0 and rng is None:
        raise ValueError("generate: sampling (temperature > 0) needs rng=jax.random.key(...)")
    if max_new_tokens == 0:
        return jnp.zeros((prompt_ids.shape[0], 0), jnp.int32)
    rng = jax.random.key(0) if rng is None else rng
    params = nn.unbox(params)
    sampling = (float(temperature), top_k, None if top_p is None else float(top_p))
    if isinstance(model, GPT):
        state = init_cache(model, prompt_ids.shape[0], prompt_ids.shape[1] + max_new_tokens)
        return _generate(model, "gpt", params, state, prompt_ids, lengths, rng, max_new_tokens, sampling)
    if isinstance(model, RNNLM):
        state = model.initial_carry(prompt_ids.shape[0])
        return _generate(model, "rnn", params, state, prompt_ids, lengths, rng, max_new_tokens, sampling)
    raise ValueError(f"generate: model must be a zoo.GPT or zoo.RNNLM, got {type(model).__name__}")


def _step(model, kind, params, state, ids, lengths=None):
    """Run ids (B, T) from state -> (logits (B, T, V), new state)."""
    if kind == "gpt":
        logits, mutated = model.apply(
            {"params": params, "cache": state}, ids, seq_lengths=lengths, decode=True, mutable=["cache"]
        )
        return logits, mutated["cache"]
    carry, logits = model.apply({"params": params}, ids, initial_carry=state, seq_lengths=lengths, return_carry=True)
    return logits, carry


@functools.partial(jax.jit, static_argnames=("model", "kind", "max_new_tokens", "sampling"))
def _generate(model, kind, params, state, prompt_ids, lengths, rng, max_new_tokens, sampling):
    temperature, top_k, top_p = sampling
    sample = functools.partial(sample_logits, temperature=temperature, top_k=top_k, top_p=top_p)
    logits, state = _step(model, kind, params, state, prompt_ids, lengths)  # prefill: (B, P, V)
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]  # (B, V) at each row's end

    def body(carry, key):
        state, logits = carry
        token = sample(logits, key)  # (B,)
        logits, state = _step(model, kind, params, state, token[:, None])  # (B, 1, V)
        return (state, logits[:, 0]), token

    keys = jax.random.split(rng, max_new_tokens)
    # The last token is only sampled: feeding it back would be a wasted forward pass.
    (_, logits), tokens = jax.lax.scan(body, (state, last), keys[:-1])  # (max_new_tokens - 1, B)
    final = sample(logits, keys[-1])  # (B,)
    return jnp.concatenate([tokens.T, final[:, None]], axis=1)  # (B, max_new_tokens)
