"""Autoregressive generation for zoo's language models: GPT with a KV cache, recurrent LMs with their state.

    tokens = zoo.generate(model, params, prompt_ids, max_new_tokens=100,
                          temperature=0.8, top_k=50, rng=jax.random.key(0))

Both kinds start with the same two compiled phases: a *prefill* that reads the
whole (right-padded) prompt at once, and a *decode loop* (``lax.scan``, one
compiled step) that feeds back one sampled token per row. A recurrent LM's
state is its carries, the same size at every step, so it runs this loop for
any number of tokens.

GPT's state is a fixed-size KV cache of at most ``block_size`` (the context
window) positions. Past the window GPT crops as nanoGPT does
(``idx_cond = idx[:, -block_size:]``): every new token is predicted from at
most the last ``block_size`` tokens of its row, at positions
``0..block_size-1`` of that cropped window.

* The cached loop runs while every row still fits the window; the longest
  row decides when it stops, and shorter rows join the window loop before
  their window is full (same tokens, the window is then just their sequence).
* Then a third phase (another ``lax.scan``) keeps a (B, block_size) window of
  tokens per row and runs one full forward pass of it per new token. Cropping
  moves every kept token to a new position, and drops a token that all the
  later ones attended to, so no cached key or value stays valid: after the
  window is full, each new token costs a forward pass of ``block_size``
  tokens, not of one. Only the output head shrinks: it runs at each row's
  last position alone (``GPT(..., logits_at=...)``), as in nanoGPT.
* A prompt longer than the window is cropped to its last ``block_size`` tokens
  (each row by its own length), with a warning.

Sampling: ``temperature=0`` is greedy (argmax); otherwise logits are divided
by the temperature, then ``top_k`` keeps the k most likely tokens and
``top_p`` the smallest set whose probability reaches p (nucleus sampling).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range, shape_str
from zoo.models.gpt import GPT
from zoo.models.nplm import NPLM
from zoo.models.rnn_lm import RNNLM

Array = jax.Array

__all__ = ["generate", "sample_logits", "init_cache"]


def sample_logits(
    logits: Array, rng: Array | None, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Array:
    """Draw token ids (B,) from float logits (B, V); ``temperature=0`` is argmax.

    Examples:
      >>> logits = jnp.log(jnp.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))   # (B, V)
      >>> zoo.sample_logits(logits, None, temperature=0)                     # argmax
      Array([1, 0], dtype=int32)
      >>> zoo.sample_logits(logits, jax.random.key(0), top_p=0.9).shape
      (2,)
    """
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
    """A zero KV cache for ``batch`` rows of ``length`` positions (no parameters are initialised).

    Examples:
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=2, num_heads=2, features=16)
      >>> cache = zoo.init_cache(zoo.GPT(config), batch=3, length=8)
      >>> sorted({leaf.shape for leaf in jax.tree.leaves(cache)})   # batch first: (B, layers, L, K, H)
      [(3,), (3, 2), (3, 2, 8, 2, 8)]
    """
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
    return jnp.asarray(prompt_ids, jnp.int32), prompt_lengths.astype(np.int32)


def _crop_to_window(prompt_ids, lengths, window):
    """Keep the last ``window`` tokens of each row (nanoGPT's crop): (B, P) -> (B, min(P, window)).

    ``lengths`` (B,) are concrete, so the new width is static; the ids may be traced.
    """
    b, p = prompt_ids.shape
    long = np.flatnonzero(lengths > window)
    if len(long):
        rows = ", ".join(f"row {i}: {lengths[i]}" for i in long[:8]) + (", ..." if len(long) > 8 else "")
        warnings.warn(
            f"generate: {len(long)} of {b} prompts are longer than the context window block_size={window} "
            f"(token counts {rows}); each is cropped to its last {window} tokens",
            stacklevel=3,
        )
    width = min(p, window)
    start = np.maximum(lengths - window, 0)  # (B,) first kept token of each row
    index = start[:, None] + np.arange(width)  # (B, width); rows that fit keep their padding
    return jnp.take_along_axis(prompt_ids, jnp.asarray(index), axis=1), np.minimum(lengths, window)


def generate(
    model: GPT | RNNLM | NPLM,
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
      model: a :class:`zoo.GPT`, :class:`zoo.RNNLM` or :class:`zoo.NPLM` (a sliding window of its
        ``order - 1`` tokens: each new token costs one forward pass of that window).
      params: its parameters (``variables['params']``, boxed or plain).
      prompt_ids: (B, P) or (P,) integer ids; rows shorter than P are
        right-padded and give their lengths in ``prompt_lengths``. For a
        GPT, a row longer than ``block_size`` is cropped to its last
        ``block_size`` tokens (with a ``warnings.warn`` naming the lengths).
      max_new_tokens: tokens to add to every row, any number. A GPT predicts
        each from at most the last ``block_size`` tokens of its row
        (nanoGPT's cropping). While the rows fit the window it decodes from
        the KV cache (one token of work per new token); once the longest row
        (prompt and new tokens) passes ``block_size`` tokens, every new token
        costs a full forward pass of a ``block_size``-token window (the
        cache cannot be reused after a crop; see the module docstring).
      temperature, top_k, top_p: sampling (see the module docstring).
      rng: a ``jax.random`` key; required unless ``temperature == 0``.
      prompt_lengths: (B,) lengths of the prompts, default P.

    Returns:
      (B, max_new_tokens) int32: the new tokens of each row (row b continues
      from its own ``prompt_lengths[b]``, after the crop of a long prompt).

    Token ids outside the vocabulary and bad lengths raise ``ValueError``
    before anything is compiled. One compiled program holds the prefill,
    the cached decode loop and, for a GPT going past its window, the
    window loop, each loop one compiled step (``lax.scan``), not one per
    token. It is recompiled for new shapes, ``max_new_tokens``, sampling
    settings or (GPT) a new longest prompt length when the window is passed.

    Examples:
      >>> config = zoo.RNNLMConfig(vocab_size=257, cell="rnn", features=8, num_layers=1)   # or a zoo.GPT
      >>> model = zoo.RNNLM(config)
      >>> prompt = jnp.array([[72, 105, 33], [72, 0, 0]])   # (B, P), the second row right-padded
      >>> params = model.init(jax.random.key(0), prompt)["params"]
      >>> new = zoo.generate(model, params, prompt, 4, temperature=0, prompt_lengths=jnp.array([3, 1]))
      >>> new.shape, new.dtype                              # (B, max_new_tokens): greedy
      ((2, 4), dtype('int32'))
      >>> bool((new >= 0).all() & (new < 257).all())
      True
    """
    prompt_ids, lengths = _check_prompt(model, prompt_ids, prompt_lengths, max_new_tokens)
    if not isinstance(temperature, (int, float, np.integer, np.floating)) or not np.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"generate: temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and not 1 <= top_k <= model.config.vocab_size:
        raise ValueError(f"generate: top_k must be in [1, vocab_size={model.config.vocab_size}], got {top_k}")
    if top_p is not None and not (np.isfinite(top_p) and 0.0 < top_p <= 1.0):
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
    if temperature != 0 and rng is None:
        raise ValueError("generate: sampling (temperature > 0) needs rng=jax.random.key(...)")
    if max_new_tokens == 0:
        return jnp.zeros((prompt_ids.shape[0], 0), jnp.int32)
    rng = jax.random.key(0) if rng is None else rng
    params = nn.unbox(params)
    sampling = (float(temperature), top_k, None if top_p is None else float(top_p))
    if isinstance(model, GPT):
        window = model.config.block_size
        prompt_ids, lengths = _crop_to_window(prompt_ids, lengths, window)
        # Tokens predicted from the cache: token i of row b sees its prompt and i new tokens,
        # which fit the window while lengths[b] + i <= block_size, for every row.
        cached = min(max_new_tokens, window - int(lengths.max()) + 1)
        state = init_cache(model, prompt_ids.shape[0], min(prompt_ids.shape[1] + max_new_tokens, window))
        return _generate(model, "gpt", params, state, prompt_ids, jnp.asarray(lengths), rng,
                         max_new_tokens, cached, sampling)
    if isinstance(model, RNNLM):
        state = model.initial_carry(prompt_ids.shape[0])
        return _generate(model, "rnn", params, state, prompt_ids, jnp.asarray(lengths), rng,
                         max_new_tokens, max_new_tokens, sampling)
    if isinstance(model, NPLM):  # no state: each token from the last order - 1 tokens of its row
        return _generate_sliding(model, params, prompt_ids, jnp.asarray(lengths), rng, max_new_tokens, sampling)
    raise ValueError(f"generate: model must be a zoo.GPT, zoo.RNNLM or zoo.NPLM, got {type(model).__name__}")


def _step(model, kind, params, state, ids, lengths=None):
    """Run ids (B, T) from state -> (logits (B, T, V), new state)."""
    if kind == "gpt":
        logits, mutated = model.apply(
            {"params": params, "cache": state}, ids, seq_lengths=lengths, decode=True, mutable=["cache"]
        )
        return logits, mutated["cache"]
    carry, logits = model.apply({"params": params}, ids, initial_carry=state, seq_lengths=lengths, return_carry=True)
    return logits, carry


@functools.partial(jax.jit, static_argnames=("model", "kind", "max_new_tokens", "cached", "sampling"))
def _generate(model, kind, params, state, prompt_ids, lengths, rng, max_new_tokens, cached, sampling):
    """The first ``cached`` tokens from the cache or carries, the rest by re-filling the GPT window."""
    temperature, top_k, top_p = sampling
    sample = functools.partial(sample_logits, temperature=temperature, top_k=top_k, top_p=top_p)
    keys = jax.random.split(rng, max_new_tokens)  # (max_new_tokens,): one per new token, whichever phase
    first = _decode_with_state(model, kind, params, state, prompt_ids, lengths, keys[:cached], sample)
    if cached == max_new_tokens:
        return first  # (B, max_new_tokens)
    window, window_lengths = _last_window(prompt_ids, lengths, first, model.config.block_size)
    rest = _decode_by_window(model, params, window, window_lengths, keys[cached:], sample)
    return jnp.concatenate([first, rest], axis=1)  # (B, max_new_tokens)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "sampling"))
def _generate_sliding(model, params, prompt_ids, lengths, rng, max_new_tokens, sampling):
    """An NPLM's sliding window: (B, n - 1) of each row's last tokens, one forward of it per new token."""
    temperature, top_k, top_p = sampling
    sample = functools.partial(sample_logits, temperature=temperature, top_k=top_k, top_p=top_p)
    keys = jax.random.split(rng, max_new_tokens)
    empty = jnp.zeros((prompt_ids.shape[0], 0), jnp.int32)
    window, kept = _last_window(prompt_ids, lengths, empty, model.config.context)  # (B, n - 1), (B,)
    return _decode_by_window(model, params, window, kept, keys, sample)  # (B, max_new_tokens)


def _decode_with_state(model, kind, params, state, prompt_ids, lengths, keys, sample):
    """Prefill, then one token per step from the cache or carries -> (B, len(keys)) new tokens."""
    logits, state = _step(model, kind, params, state, prompt_ids, lengths)  # prefill: (B, P, V)
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]  # (B, V) at each row's end

    def body(carry, key):
        state, logits = carry
        token = sample(logits, key)  # (B,)
        logits, state = _step(model, kind, params, state, token[:, None])  # (B, 1, V)
        return (state, logits[:, 0]), token

    # The last token is only sampled: feeding it back would be a wasted forward pass.
    (_, logits), tokens = jax.lax.scan(body, (state, last), keys[:-1])  # (len(keys) - 1, B)
    final = sample(logits, keys[-1])  # (B,)
    return jnp.concatenate([tokens.T, final[:, None]], axis=1)  # (B, len(keys))


def _last_window(prompt_ids, lengths, new, window):
    """Each row's prompt followed by its new tokens, cropped to the last ``window``.

    prompt_ids (B, P) right-padded to ``lengths`` (B,), new (B, N) ->
    (B, window) ids, left-aligned and zero-padded, and their lengths (B,).
    """
    b, p = prompt_ids.shape
    n = new.shape[1]
    rows = jnp.arange(b)[:, None]  # (B, 1)
    seq = jnp.concatenate([prompt_ids, jnp.zeros((b, n), jnp.int32)], axis=1)  # (B, P + N)
    seq = seq.at[rows, lengths[:, None] + jnp.arange(n)].set(new)  # new tokens right after each prompt
    total = lengths + n  # (B,)
    start = jnp.maximum(total - window, 0)  # (B,) first token still in the window
    # The window phase starts only once the longest row passes the window, so P + N > window and
    # the (B, window) gather stays inside seq; clip anyway, the padding is masked below.
    index = jnp.minimum(start[:, None] + jnp.arange(window), p + n - 1)  # (B, window)
    kept = jnp.minimum(total, window)  # (B,)
    ids = jnp.where(jnp.arange(window) < kept[:, None], jnp.take_along_axis(seq, index, axis=1), 0)
    return ids, kept


def _decode_by_window(model, params, window, lengths, keys, sample):
    """nanoGPT's loop: one full forward of each row's cropped window per token -> (B, len(keys)).

    window (B, W) holds each row's last ``lengths`` (B,) tokens from position 0; rows shorter
    than W are right-padded, which the causal mask keeps out of the positions that count.
    """
    b, w = window.shape
    rows = jnp.arange(b)

    def body(carry, key):
        window, lengths = carry
        logits = model.apply({"params": params}, window, logits_at=lengths - 1)  # (B, 1, V): each row's end
        logits = logits[:, 0]  # (B, V)
        token = sample(logits, key)  # (B,)
        # A full row drops its oldest token (every position shifts down by one); the others grow.
        window = jnp.where((lengths == w)[:, None], jnp.roll(window, -1, axis=1), window)  # (B, W)
        window = window.at[rows, jnp.minimum(lengths, w - 1)].set(token)
        return (window, jnp.minimum(lengths + 1, w)), token

    _, tokens = jax.lax.scan(body, (window, lengths), keys)  # (len(keys), B)
    return tokens.T  # (B, len(keys))
