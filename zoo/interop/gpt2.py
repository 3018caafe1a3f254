"""GPT-2 (Hugging Face ``GPT2LMHeadModel``, ``GPT2Model``) <-> :class:`zoo.GPT`: the config and the name table.

The config, field by field (``config.json`` -> :class:`zoo.GPTConfig`)::

    vocab_size              vocab_size
    n_positions             block_size             (the position table, and the context window)
    n_layer                 num_layers
    n_head                  num_heads
    n_embd                  features
    n_inner                 mlp_dim                (null: 4 * n_embd in both)
    activation_function     activation             gelu_new, gelu_pytorch_tanh -> gelu_tanh; gelu; relu
    layer_norm_epsilon      layer_norm_epsilon
    tie_word_embeddings     tie_embeddings         (false: an lm_head.weight of its own)
    resid_pdrop             dropout_rate           (zoo has one rate; embd_pdrop and attn_pdrop are not read)
    (always)                positions="learned", use_bias=True

Refused by name, since zoo.GPT does not implement them: ``scale_attn_weights``
false, ``scale_attn_by_inverse_layer_idx`` true, ``add_cross_attention`` true;
and, on export, a zoo config with ``positions="rope"`` or ``use_bias=False``.

The weights are :data:`TABLE`, :data:`LAYER_TABLE` and :data:`HEAD_TABLE`
below, one row per zoo parameter (D features, N heads of H, F the MLP width,
V vocabulary, P positions; GPT-2's Conv1D weights are (in, out) like zoo's
kernels, so nothing is transposed but the untied head; ``how`` is explained
in :mod:`zoo.interop.convert`). GPT2LMHeadModel's keys carry the prefix
``transformer.``; both layouts load. A tied checkpoint may leave
``lm_head.weight`` out; the legacy buffers ``attn.bias`` and
``attn.masked_bias`` are ignored.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from zoo.interop.convert import Entry, to_hf, to_zoo
from zoo.models.gpt import GPTConfig

__all__ = ["ARCHITECTURES", "TABLE", "LAYER_TABLE", "HEAD_TABLE", "config_from_hf", "config_to_hf",
           "params_from_hf", "params_to_hf"]

ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
PREFIX = "transformer."  # GPT2LMHeadModel's keys; GPT2Model's have none

#     zoo parameter                  zoo shape    HF tensor                    HF shape  how
TABLE = [
    Entry("wte/embedding",             "V D",     ("wte.weight",),              "V D"),
    Entry("wpe/embedding",             "P D",     ("wpe.weight",),              "P D"),
    Entry("decoder/final_norm/scale",  "D",       ("ln_f.weight",),             "D"),
    Entry("decoder/final_norm/bias",   "D",       ("ln_f.bias",),               "D"),
]
LAYER_TABLE = [  # under decoder/layers (stacked) or decoder/layers_{i}
    Entry("self_attention_norm/scale", "D",       ("h.{i}.ln_1.weight",),       "D"),
    Entry("self_attention_norm/bias",  "D",       ("h.{i}.ln_1.bias",),         "D"),
    Entry("self_attention/qkv_kernel", "D 3 N H", ("h.{i}.attn.c_attn.weight",), "D 3D"),
    Entry("self_attention/qkv_bias",   "3 N H",   ("h.{i}.attn.c_attn.bias",),  "3D"),
    Entry("self_attention/out_kernel", "N H D",   ("h.{i}.attn.c_proj.weight",), "D D"),
    Entry("self_attention/out_bias",   "D",       ("h.{i}.attn.c_proj.bias",),  "D"),
    Entry("mlp_norm/scale",            "D",       ("h.{i}.ln_2.weight",),       "D"),
    Entry("mlp_norm/bias",             "D",       ("h.{i}.ln_2.bias",),         "D"),
    Entry("mlp/wi/kernel",             "D F",     ("h.{i}.mlp.c_fc.weight",),   "D F"),
    Entry("mlp/wi/bias",               "F",       ("h.{i}.mlp.c_fc.bias",),     "F"),
    Entry("mlp/wo/kernel",             "F D",     ("h.{i}.mlp.c_proj.weight",), "F D"),
    Entry("mlp/wo/bias",               "D",       ("h.{i}.mlp.c_proj.bias",),   "D"),
]
HEAD_TABLE = [  # only when tie_word_embeddings is false; the key has no prefix
    Entry("lm_head/kernel",            "D V",     ("lm_head.weight",),          "V D", "transpose"),
]
# Buffers of older checkpoints (the causal mask and its fill value), not weights.
IGNORED = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)$")

ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
EXPORTED_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
# Settings zoo.GPT does not implement: (the value it implements, the default when config.json leaves it out).
UNSUPPORTED = {
    "scale_attn_weights": (True, True),
    "scale_attn_by_inverse_layer_idx": (False, False),
    "add_cross_attention": (False, False),
}


def _dims(config: GPTConfig) -> dict[str, int]:
    return {"V": config.vocab_size, "P": config.block_size, "D": config.features, "N": config.num_heads,
            "H": config.head_dim, "F": config.mlp_dim or 4 * config.features}


def config_from_hf(hf: dict[str, Any], where: str) -> GPTConfig:
    """:class:`zoo.GPTConfig` from a GPT-2 ``config.json`` (as a dict); ``ValueError`` naming a setting zoo lacks."""
    for field, (supported, default) in UNSUPPORTED.items():
        if hf.get(field, default) != supported:
            raise ValueError(f"{where}: {field}={hf.get(field)!r} is not implemented by zoo.GPT (it implements "
                             f"{field}={supported}); this checkpoint cannot be loaded")
    act = hf.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(f"{where}: activation_function={act!r} is not implemented by zoo.GPT; expected one of "
                         f"{', '.join(ACTIVATIONS)}")
    rates = {k: hf.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(set(rates.values())) > 1:
        warnings.warn(f"{where}: dropout rates differ ({rates}); zoo.GPT has one rate and uses "
                      f"resid_pdrop={rates['resid_pdrop']} for all", stacklevel=3)
    try:
        return GPTConfig(
            vocab_size=hf.get("vocab_size", 50257),
            block_size=hf.get("n_positions", 1024),
            num_layers=hf.get("n_layer", 12),
            num_heads=hf.get("n_head", 12),
            features=hf.get("n_embd", 768),
            mlp_dim=hf.get("n_inner"),
            positions="learned",
            use_bias=True,
            layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
            activation=ACTIVATIONS[act],
            tie_embeddings=hf.get("tie_word_embeddings", True),
            dropout_rate=rates["resid_pdrop"],
        )
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def config_to_hf(config: GPTConfig) -> dict[str, Any]:
    """A GPT-2 ``config.json`` (as a dict) for ``config``; ``ValueError`` naming a field GPT-2 cannot express."""
    if config.positions != "learned":
        raise ValueError(f"GPTConfig.positions={config.positions!r}: GPT-2 has a learned position table only; "
                         "a RoPE model cannot be exported as GPT-2")
    if not config.use_bias:
        raise ValueError("GPTConfig.use_bias=False: GPT-2 has biases in every dense layer and LayerNorm; "
                         "a model without them cannot be exported as GPT-2")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_layer": config.num_layers,
        "n_head": config.num_heads,
        "n_embd": config.features,
        "n_inner": config.mlp_dim,
        "activation_function": EXPORTED_ACTIVATIONS[config.activation],
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "tie_word_embeddings": config.tie_embeddings,
        "resid_pdrop": config.dropout_rate,
        "embd_pdrop": config.dropout_rate,
        "attn_pdrop": config.dropout_rate,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }


def params_from_hf(state: dict[str, Any], config: GPTConfig, *, source: str) -> dict[str, Any]:
    """zoo.GPT params from a GPT-2 state dict (keys with or without ``transformer.``).

    A tied checkpoint may leave ``lm_head.weight`` out (the word table is the
    head, as transformers saves it); an untied one must have it. Keys that no
    table row reads (other than the legacy attention buffers) are an error.
    """
    state = {k.removeprefix(PREFIX): v for k, v in state.items()}
    used: set[str] = set()
    kw = {"dims": _dims(config), "num_layers": config.num_layers, "layers_path": "decoder",
          "scan_layers": config.scan_layers, "source": source, "used": used}
    params = to_zoo(state, TABLE, LAYER_TABLE, **kw)
    if config.tie_embeddings:
        used.add("lm_head.weight")  # transformers ties it to wte on load; it is the same numbers
    else:
        params.update(to_zoo(state, HEAD_TABLE, [], **kw))
    unknown = sorted(k for k in state if k not in used and not IGNORED.search(k))
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} tensors that GPT-2's table does not know, e.g. {unknown[:3]}")
    return params


def params_to_hf(params: dict[str, Any], config: GPTConfig) -> dict[str, Any]:
    """GPT2LMHeadModel's state dict (``transformer.`` keys, ``lm_head.weight`` when untied) from zoo.GPT params."""
    kw = {"dims": _dims(config), "num_layers": config.num_layers, "layers_path": "decoder",
          "scan_layers": config.scan_layers}
    out = {PREFIX + k: v for k, v in to_hf(params, TABLE, LAYER_TABLE, **kw).items()}
    if not config.tie_embeddings:
        out.update(to_hf(params, HEAD_TABLE, [], **kw))
    return out
