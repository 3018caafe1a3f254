"""Every program zoo runs on an accelerator, lowered for CUDA and for TPU on this CPU-only jaxlib.

``jax.export.export(jax.jit(f), platforms=[...])`` lowers for a platform the
machine does not have, so a lowering error specific to CUDA or TPU shows up
here rather than in the few minutes a GPU is lent (docs/device_report.md).
The programs run in bfloat16 with float32 parameters, at tiny shapes, and are
exported once per platform (cached) and then inspected as StableHLO text:

* every ``dot_general`` reads bfloat16 operands (a float32 matmul in a
  bfloat16 step runs at a fraction of a GPU's or TPU's bfloat16 rate: the
  dense attention's and minGRU's backward matmuls were float32 until
  ``zoo.layers.linear.einsum_acc``);
* no host callback (no ``custom_call`` to a Python callback, no effect left
  in the program but zoo's opt-in value checks, which lower to nothing);
* no ``optimization_barrier``: zoo's CPU layouts (zoo/layers/platform.py) stay
  on the CPU, and the CPU export of the same step does hold them;
* per program, the property that matters there (the blockwise attention
  never holds a (T, S) array; the GPT decode step has no loop; the linear
  recurrence's default method is chosen for the platform; ...).

cuDNN attention cannot be lowered here: jax.nn looks for cuDNN (through the
CUDA plugin) while tracing, so tracing fails on a machine without it, and zoo
refuses ``implementation='cudnn'`` off a GPU before that. What is tested is
the fallback: the refusal, and the default implementations that run instead.

``python tests/test_lowering.py`` prints every exported program with its
size.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from jax._src import checkify

import zoo
from zoo import presets, registry
from zoo.layers import scan
from zoo.models import beam
from zoo.models.generate import init_cache
from zoo.train.step import abstract_train_state, make_mesh, make_train_step

PLATFORMS = ("cuda", "tpu")
BF16 = jnp.bfloat16
TRAIN_FAMILIES = {"gpt": "nano", "bert": "tiny", "seq2seq": "tiny", "rnn": "nano", "lstm": "nano", "gru": "nano",
                  "mingru": "nano"}


def _spec(x):
    return jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))


def _abstract(tree):
    return jax.tree.map(_spec, tree)


# -- the programs: name -> () -> (function, abstract arguments, what it checks) ------------------


def _train_step(family, minlstm=False):
    fam = registry.family(family)
    p = presets.get(family, TRAIN_FAMILIES[family])
    cfg = p.model.replace(dtype="bfloat16", **({"cell": "minlstm"} if minlstm else {}))
    model = fam.module(cfg)
    mesh = make_mesh(jax.devices()[:1])
    state = abstract_train_state(model, p.train, model_config=cfg, mesh=mesh, objective=fam.objective)
    example = fam.objective.example_batch(cfg)
    batch = {k: jax.ShapeDtypeStruct((1, 2) + np.shape(v)[1:], np.asarray(v).dtype) for k, v in example.items()}
    return make_train_step(model, p.train, mesh, fam.objective), (state, batch)


def _gpt_decode():
    cfg = presets.get("gpt", "nano").model.replace(dtype="bfloat16")
    model = zoo.GPT(cfg)
    ids = jnp.zeros((2, 1), jnp.int32)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), ids))["params"]
    cache = _abstract(init_cache(model, 2, cfg.block_size))

    def step(params, cache, ids):
        logits, mutated = model.apply({"params": params, "cache": cache}, ids, decode=True, mutable=["cache"])
        return logits, mutated["cache"]

    return step, (params, cache, _spec(ids))


def _seq2seq_decode():
    cfg = presets.get("seq2seq", "tiny").model.replace(dtype="bfloat16")
    model = zoo.Seq2SeqTransformer(cfg)
    src = jnp.zeros((2, cfg.max_source_len), jnp.int32)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), src, jnp.zeros((2, 4), jnp.int32)))["params"]
    cache = _abstract(beam.init_cache(model, 2, cfg.max_source_len, cfg.max_target_len))
    encoded = jax.ShapeDtypeStruct((2, cfg.max_source_len, cfg.features), BF16)
    step = functools.partial(beam._step, model)
    return step, (params, cache, jax.ShapeDtypeStruct((2, 1), jnp.int32), encoded,
                  jax.ShapeDtypeStruct((2,), jnp.int32))


def _recurrent_decode(family):
    cfg = presets.get(family, "nano").model.replace(dtype="bfloat16")
    model = zoo.RNNLM(cfg)
    ids = jnp.zeros((2, 1), jnp.int32)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), ids))["params"]

    def step(params, carry, ids):
        return model.apply({"params": params}, ids, initial_carry=carry, return_carry=True)

    return step, (params, _abstract(model.initial_carry(2)), _spec(ids))


ATTENTION_SHAPE = (2, 512, 4, 16)  # B, T, heads, head size: T * S over the blockwise threshold


def _attention(impl, backward):
    q = jax.ShapeDtypeStruct(ATTENTION_SHAPE, BF16)
    lengths = jax.ShapeDtypeStruct((2,), jnp.int32)

    def forward(q, k, v, lengths):
        return zoo.dot_product_attention(q, k, v, is_causal=True, key_value_seq_lengths=lengths, implementation=impl)

    if backward:
        def grads(q, k, v, lengths):
            return jax.grad(lambda *a: forward(*a, lengths).astype(jnp.float32).sum(), argnums=(0, 1, 2))(q, k, v)

        return grads, (q, q, q, lengths)
    return forward, (q, q, q, lengths)


def _fused_rnn(cell, backward):
    rnn = zoo.RNN(cell(features=32, dtype=BF16))
    x = jax.ShapeDtypeStruct((2, 16, 24), BF16)
    params = jax.eval_shape(lambda: rnn.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype)))
    lengths = jax.ShapeDtypeStruct((2,), jnp.int32)
    apply = lambda p, x, n: rnn.apply(p, x, seq_lengths=n)
    if backward:
        return jax.grad(lambda p, x, n: apply(p, x, n).astype(jnp.float32).sum(), argnums=(0, 1)), (params, x, lengths)
    return apply, (params, x, lengths)


def _linear(method, backward, log_space=True):
    t = jax.ShapeDtypeStruct((300, 2, 8), jnp.float32)  # T = 300: several chunks, not a multiple of any

    def forward(log_a, b, h0, mask):
        return zoo.linear_recurrence(log_a, b, h0, mask, log_space=log_space, method=method, chunk_size=None)[1]

    args = (t, t, jax.ShapeDtypeStruct((2, 8), jnp.float32), jax.ShapeDtypeStruct((300, 2), jnp.bool_))
    if backward:
        return jax.grad(lambda *a: forward(*a).sum(), argnums=(0, 1, 2)), args
    return forward, args


PROGRAMS = {
    **{f"train/{f}": functools.partial(_train_step, f) for f in TRAIN_FAMILIES},
    "train/minlstm": functools.partial(_train_step, "mingru", minlstm=True),
    "decode/gpt": _gpt_decode,
    "decode/seq2seq": _seq2seq_decode,
    **{f"decode/{f}": functools.partial(_recurrent_decode, f) for f in ("lstm", "mingru")},
    **{f"attention/{i}/{d}": functools.partial(_attention, i, d == "bwd")
       for i in ("xla", "blockwise", None) for d in ("fwd", "bwd")},
    **{f"rnn/{c.__name__}/{d}": functools.partial(_fused_rnn, c, d == "bwd")
       for c in (zoo.LSTMCell, zoo.GRUCell, zoo.SimpleRNNCell, zoo.MinGRUCell) for d in ("fwd", "bwd")},
    **{f"linear/{m}/{d}": functools.partial(_linear, m, d == "bwd")
       for m in (*scan.METHODS, None) for d in ("fwd", "bwd")},
}


@functools.lru_cache(maxsize=None)
def exported(name: str, platform: str) -> tuple[export.Exported, str]:
    """(the exported program, its StableHLO text), once per (program, platform)."""
    fn, args = PROGRAMS[name]()
    exp = export.export(fn if hasattr(fn, "lower") else jax.jit(fn), platforms=[platform])(*args)
    return exp, exp.mlir_module()


def dot_types(text: str) -> list[tuple[str, str]]:
    """The element types of the two operands of every dot_general."""
    out = []
    for line in text.splitlines():
        if "stablehlo.dot_general" in line:
            m = re.search(r":\s*\(tensor<[^>]*x(\w+)>,\s*tensor<[^>]*x(\w+)>\)\s*->", line)
            assert m, line
            out.append(m.groups())
    return out


def count(text: str, op: str) -> int:
    return len(re.findall(rf"\bstablehlo\.{op}\b", text))


CASES = [(n, p) for n in PROGRAMS for p in PLATFORMS]


@pytest.mark.parametrize("name, platform", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_exports_without_cpu_tricks_or_callbacks(name, platform):
    """Exports; no optimization_barrier, no host callback, no effects; bfloat16 matmuls where the program
    is bfloat16 (every program but the float32 linear recurrences)."""
    exp, text = exported(name, platform)
    assert exp.platforms == (platform,)
    assert count(text, "optimization_barrier") == 0, "a CPU layout trick reached a non-CPU program"
    assert not re.search(r"custom_call @\w*callback", text, re.IGNORECASE), "a host callback in the program"
    # zoo's opt-in value checks (checkify.debug_check, zoo.checked) leave an effect in the steps that
    # are not training steps (those strip it) and lower to nothing: no other effect may be left.
    assert exp.ordered_effects == ()
    assert all(isinstance(e, checkify.ErrorEffect) for e in exp.unordered_effects), exp.unordered_effects
    assert "f64" not in text
    if not name.startswith("linear/"):
        assert dot_types(text), "expected matmuls"
        assert all(t == ("bf16", "bf16") for t in dot_types(text)), f"float32 matmuls: {dot_types(text)}"


def test_cpu_tricks_stay_on_the_cpu():
    """Issue 15, item 4: the GPT training step exported for CUDA and for TPU holds no optimization_barrier,
    while the same step exported for the CPU holds the barriers of zoo/layers/platform.py: the choice
    follows the platform lowered for, not the machine (whose default backend here is the CPU)."""
    for platform in PLATFORMS:
        assert count(exported("train/gpt", platform)[1], "optimization_barrier") == 0, platform
    fn, args = PROGRAMS["train/gpt"]()
    text = export.export(fn, platforms=["cpu"])(*args).mlir_module()
    assert count(text, "optimization_barrier") > 0


@pytest.mark.parametrize("platform", PLATFORMS)
def test_train_steps_keep_float32_parameters(platform):
    """Parameters and optimizer state stay float32 in the bfloat16 steps (inputs and outputs of the program)."""
    for family in TRAIN_FAMILIES:
        exp, _ = exported(f"train/{family}", platform)
        floats = [a.dtype for a in exp.in_avals + exp.out_avals if jnp.issubdtype(a.dtype, jnp.floating)]
        assert floats and all(d == jnp.float32 for d in floats), (family, set(floats))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_decode_steps(platform):
    """A decode step has no loop over positions: GPT's and seq2seq's one loop is the scan over their layers
    (scan_layers), and GPT's KV cache is bfloat16; a recurrent LM's loops are one step long (one per
    layer: XLA's while-loop simplifier removes loops of one trip), minGRU's (associative) none."""
    exp, text = exported("decode/gpt", platform)
    assert count(text, "while") == 1
    caches = [a for a in exp.out_avals if a.ndim == 5]  # the updated (layers, B, S, K, H) keys and values
    assert caches and all(a.dtype == BF16 for a in caches)
    assert count(exported("decode/seq2seq", platform)[1], "while") == 1
    assert count(exported("decode/lstm", platform)[1], "while") == presets.get("lstm", "nano").model.num_layers
    assert count(exported("decode/mingru", platform)[1], "while") == 0


@pytest.mark.parametrize("platform", PLATFORMS)
def test_blockwise_attention_never_holds_the_logits(platform):
    """Dense attention materialises (T, S) logits; the blockwise kernel, forward and backward, holds
    nothing of that size; the default (None) picks blockwise at this T * S."""
    t = ATTENTION_SHAPE[1]
    square = re.compile(rf"tensor<(?:\d+x)*{t}x{t}x")
    assert square.search(exported("attention/xla/fwd", platform)[1])
    for name in ("attention/blockwise/fwd", "attention/blockwise/bwd", "attention/None/fwd", "attention/None/bwd"):
        assert not square.search(exported(name, platform)[1]), name


@pytest.mark.parametrize("platform", PLATFORMS)
def test_linear_recurrence_methods(platform):
    """Sequential: one loop; associative: none; chunked: three forward (the chunks, the boundaries, the
    chunks again) and three more backward; the default (None) is the accelerator's choice."""
    loops = {m: count(exported(f"linear/{m}/fwd", platform)[1], "while") for m in scan.METHODS}
    assert loops == {"sequential": 1, "associative": 0, "chunked": 3}
    assert count(exported("linear/chunked/bwd", platform)[1], "while") == 6
    assert count(exported("linear/None/fwd", platform)[1], "while") == loops[scan.ACCELERATOR_METHOD]


def test_linear_recurrence_default_follows_the_lowering_platform():
    """method=None is decided when lowering: a CPU export holds the CPU's method, a CUDA export the
    accelerator's, even on this CPU machine; one export for both holds both."""
    fn, args = PROGRAMS["linear/None/fwd"]()
    cpu = export.export(jax.jit(fn), platforms=["cpu"])(*args).mlir_module()
    loops = {"sequential": 1, "associative": 0, "chunked": 3}
    assert count(cpu, "while") == loops[scan.CPU_METHOD]
    both = export.export(jax.jit(fn), platforms=["cpu", "cuda"])(*args).mlir_module()
    assert count(both, "while") == loops[scan.CPU_METHOD] + loops[scan.ACCELERATOR_METHOD]


def test_cudnn_falls_back():
    """cuDNN attention cannot be lowered without a GPU: zoo refuses it off a GPU, before tracing, with a
    message naming the alternatives; the default never picks it (its programs are exported above)."""
    if jax.default_backend() == "gpu":
        pytest.skip("a GPU is present: cuDNN attention runs in zoo.bench.device_report")
    q = jnp.zeros((1, 8, 2, 16), BF16)
    with pytest.raises(ValueError, match="implementation='cudnn' needs a GPU.*'blockwise' or 'xla'"):
        zoo.dot_product_attention(q, q, q, implementation="cudnn")


def sizes() -> list[tuple[str, str, int]]:
    """(program, platform, bytes of its StableHLO text) for every exported program."""
    return [(n, p, len(exported(n, p)[1].encode())) for n, p in CASES]


if __name__ == "__main__":
    for name, platform, size in sizes():
        print(f"{name:32s} {platform:5s} {size:9,d} bytes of StableHLO text")
