"""BERT (Hugging Face ``BertModel``, ``BertFor...``) <-> zoo's BERT models: the config and the name table.

The config, field by field (``config.json`` -> :class:`zoo.BERTConfig`)::

    vocab_size                     vocab_size
    max_position_embeddings        max_positions
    type_vocab_size                type_vocab_size
    num_hidden_layers              num_layers
    num_attention_heads            num_heads
    hidden_size                    features
    intermediate_size              mlp_dim            (4 * hidden_size: None, zoo's default)
    hidden_act                     activation         gelu; gelu_new, gelu_pytorch_tanh -> gelu_tanh; relu
    layer_norm_eps                 layer_norm_epsilon
    hidden_dropout_prob            dropout_rate
    attention_probs_dropout_prob   attention_dropout_rate
    initializer_range              init_std
    pad_token_id                   pad_id
    id2label (its size)            num_labels
    (none)                         block_size = min(128, max_positions): BERT's pretraining length,
                                   the default length of zoo finetune and zoo eval

Refused by name: ``is_decoder``, ``add_cross_attention``, a
``position_embedding_type`` other than ``absolute``, ``tie_word_embeddings``
false (zoo's masked-LM decoder is the word table); on export,
``use_bias=False``.

The weights are :data:`TABLE`, :data:`LAYER_TABLE` and :data:`HEADS` below
(D features, N heads of H, F the MLP width, V vocabulary, P positions, T
token types, L labels; torch ``Linear`` weights are (out, in), so kernels are
transposed; query, key and value are stacked into one kernel). HF head
models put the encoder under ``bert.``; both layouts load. Ignored: the
buffers ``embeddings.position_ids`` and ``embeddings.token_type_ids``, and
``cls.predictions.decoder.weight``/``.bias``, which are the word table and
``cls.predictions.bias`` again (checked). Old checkpoints' LayerNorm
``gamma``/``beta`` read as ``weight``/``bias``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from zoo.interop.convert import Entry, to_hf, to_zoo
from zoo.models.bert import BERTConfig

__all__ = ["ARCHITECTURES", "TABLE", "LAYER_TABLE", "HEADS", "config_from_hf", "config_to_hf",
           "params_from_hf", "params_to_hf", "params_from_hf_bert"]

PREFIX = "bert."
# HF architecture -> (zoo family, the heads its weights must have, the heads they may also have)
ARCHITECTURES = {
    "BertModel": ("bert-encoder", (), ("pooler",)),
    "BertForMaskedLM": ("bert", ("mlm_head",), ("pooler", "nsp")),
    "BertForPreTraining": ("bert", ("mlm_head", "pooler", "nsp"), ()),
    "BertForSequenceClassification": ("bert-classifier", ("pooler", "classifier"), ()),
    "BertForTokenClassification": ("bert-token-classifier", ("classifier",), ()),
}

#     zoo parameter                           zoo shape  HF tensor (without "bert.")                  HF shape how
TABLE = [
    Entry("bert/word_embeddings/embedding",     "V D",   ("embeddings.word_embeddings.weight",),       "V D"),
    Entry("bert/position_embeddings/embedding", "P D",   ("embeddings.position_embeddings.weight",),   "P D"),
    Entry("bert/token_type_embeddings/embedding", "T D", ("embeddings.token_type_embeddings.weight",), "T D"),
    Entry("bert/embeddings_norm/scale",         "D",     ("embeddings.LayerNorm.weight",),             "D"),
    Entry("bert/embeddings_norm/bias",          "D",     ("embeddings.LayerNorm.bias",),               "D"),
]
_QKV = ("query", "key", "value")
LAYER_TABLE = [  # under bert/encoder/layers (stacked) or bert/encoder/layers_{i}; HF: encoder.layer.{i}.
    Entry("self_attention/qkv_kernel", "D 3 N H",
          tuple(f"encoder.layer.{{i}}.attention.self.{x}.weight" for x in _QKV), "D D", "stack_t"),
    Entry("self_attention/qkv_bias",   "3 N H",
          tuple(f"encoder.layer.{{i}}.attention.self.{x}.bias" for x in _QKV),   "D",   "stack"),
    Entry("self_attention/out_kernel", "N H D", ("encoder.layer.{i}.attention.output.dense.weight",), "D D",
          "transpose"),
    Entry("self_attention/out_bias",   "D",     ("encoder.layer.{i}.attention.output.dense.bias",),   "D"),
    Entry("self_attention_norm/scale", "D",     ("encoder.layer.{i}.attention.output.LayerNorm.weight",), "D"),
    Entry("self_attention_norm/bias",  "D",     ("encoder.layer.{i}.attention.output.LayerNorm.bias",),   "D"),
    Entry("mlp/wi/kernel",             "D F",   ("encoder.layer.{i}.intermediate.dense.weight",), "F D", "transpose"),
    Entry("mlp/wi/bias",               "F",     ("encoder.layer.{i}.intermediate.dense.bias",),   "F"),
    Entry("mlp/wo/kernel",             "F D",   ("encoder.layer.{i}.output.dense.weight",),       "D F", "transpose"),
    Entry("mlp/wo/bias",               "D",     ("encoder.layer.{i}.output.dense.bias",),         "D"),
    Entry("mlp_norm/scale",            "D",     ("encoder.layer.{i}.output.LayerNorm.weight",),   "D"),
    Entry("mlp_norm/bias",             "D",     ("encoder.layer.{i}.output.LayerNorm.bias",),     "D"),
]
HEADS = {  # the pooler is inside BertModel (prefixed "bert."); the other heads' keys have no prefix
    "pooler": [
        Entry("pooler/kernel",  "D D", ("pooler.dense.weight",), "D D", "transpose"),
        Entry("pooler/bias",    "D",   ("pooler.dense.bias",),   "D"),
    ],
    "mlm_head": [
        Entry("mlm_head/transform/kernel",     "D D", ("cls.predictions.transform.dense.weight",), "D D", "transpose"),
        Entry("mlm_head/transform/bias",       "D",   ("cls.predictions.transform.dense.bias",),   "D"),
        Entry("mlm_head/transform_norm/scale", "D",   ("cls.predictions.transform.LayerNorm.weight",), "D"),
        Entry("mlm_head/transform_norm/bias",  "D",   ("cls.predictions.transform.LayerNorm.bias",),   "D"),
        Entry("mlm_head/bias",                 "V",   ("cls.predictions.bias",),                   "V"),
    ],
    "nsp": [
        Entry("nsp/kernel",     "D 2", ("cls.seq_relationship.weight",), "2 D", "transpose"),
        Entry("nsp/bias",       "2",   ("cls.seq_relationship.bias",),   "2"),
    ],
    "classifier": [
        Entry("classifier/kernel", "D L", ("classifier.weight",), "L D", "transpose"),
        Entry("classifier/bias",   "L",   ("classifier.bias",),   "L"),
    ],
}
_HEAD_KEYS = {head: entries[0].keys[0] for head, entries in HEADS.items()}  # a head is present iff this is
IGNORED = re.compile(r"^embeddings\.(position_ids|token_type_ids)$")

ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "relu": "relu"}
EXPORTED_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
# Settings zoo's BERT does not implement: (the value it implements, the default when config.json leaves it out).
UNSUPPORTED = {
    "is_decoder": (False, False),
    "add_cross_attention": (False, False),
    "position_embedding_type": ("absolute", "absolute"),
    "tie_word_embeddings": (True, True),
}


def _dims(config: BERTConfig) -> dict[str, int]:
    return {"V": config.vocab_size, "P": config.max_positions, "T": config.type_vocab_size, "D": config.features,
            "N": config.num_heads, "H": config.head_dim, "F": config.mlp_dim or 4 * config.features,
            "L": config.num_labels}


def config_from_hf(hf: dict[str, Any], where: str) -> BERTConfig:
    """:class:`zoo.BERTConfig` from a BERT ``config.json`` (as a dict); ``ValueError`` naming a setting zoo lacks."""
    for field, (supported, default) in UNSUPPORTED.items():
        if hf.get(field, default) != supported:
            raise ValueError(f"{where}: {field}={hf.get(field)!r} is not implemented by zoo's BERT (it implements "
                             f"{field}={supported!r}); this checkpoint cannot be loaded")
    act = hf.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ValueError(f"{where}: hidden_act={act!r} is not implemented by zoo's BERT; expected one of "
                         f"{', '.join(ACTIVATIONS)}")
    features = hf.get("hidden_size", 768)
    mlp = hf.get("intermediate_size", 3072)
    positions = hf.get("max_position_embeddings", 512)
    labels = hf.get("id2label")
    pad = hf.get("pad_token_id")
    try:
        return BERTConfig(
            vocab_size=hf.get("vocab_size", 30522),
            max_positions=positions,
            type_vocab_size=hf.get("type_vocab_size", 2),
            num_layers=hf.get("num_hidden_layers", 12),
            num_heads=hf.get("num_attention_heads", 12),
            features=features,
            mlp_dim=None if mlp == 4 * features else mlp,
            activation=ACTIVATIONS[act],
            layer_norm_epsilon=hf.get("layer_norm_eps", 1e-12),
            dropout_rate=hf.get("hidden_dropout_prob", 0.1),
            attention_dropout_rate=hf.get("attention_probs_dropout_prob", 0.1),
            init_std=hf.get("initializer_range", 0.02),
            pad_id=0 if pad is None else pad,
            num_labels=len(labels) if labels else hf.get("num_labels", 2),
            block_size=min(128, positions),
        )
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def config_to_hf(config: BERTConfig, architecture: str, labels: list | None = None) -> dict[str, Any]:
    """A BERT ``config.json`` (as a dict) for ``config``; ``ValueError`` naming a field BERT cannot express."""
    if not config.use_bias:
        raise ValueError("BERTConfig.use_bias=False: BERT has biases in every dense layer and LayerNorm; "
                         "a model without them cannot be exported as BERT")
    out = {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_positions,
        "type_vocab_size": config.type_vocab_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "hidden_size": config.features,
        "intermediate_size": config.mlp_dim or 4 * config.features,
        "hidden_act": EXPORTED_ACTIVATIONS[config.activation],
        "layer_norm_eps": config.layer_norm_epsilon,
        "hidden_dropout_prob": config.dropout_rate,
        "attention_probs_dropout_prob": config.attention_dropout_rate,
        "initializer_range": config.init_std,
        "pad_token_id": config.pad_id,
        "position_embedding_type": "absolute",
        "is_decoder": False,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    names = [str(x) for x in labels] if labels else [f"LABEL_{i}" for i in range(config.num_labels)]
    out["id2label"] = dict(enumerate(names))  # num_labels, for every architecture (transformers' way to write it)
    out["label2id"] = {name: i for i, name in enumerate(names)}
    return out


def _normalise_keys(state: dict[str, Any]) -> dict[str, Any]:
    """Keys without the ``bert.`` prefix; old checkpoints' LayerNorm ``gamma``/``beta`` as ``weight``/``bias``."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix(PREFIX)
        k = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k))
        out[k] = v
    return out


def params_from_hf(state: dict[str, Any], config: BERTConfig, *, architecture: str = "BertForPreTraining",
                   source: str = "state dict", heads: tuple[str, ...] | None = None) -> dict[str, Any]:
    """zoo params ``{"bert": ..., heads...}`` from a HF BERT state dict (keys with or without ``bert.``).

    ``architecture`` (a key of :data:`ARCHITECTURES`) says which heads the
    weights must have and which others are kept when present; ``heads``
    overrides it with exactly the heads to read (the rest must be absent).
    Raises ``ValueError`` naming a missing tensor, a shape that does not fit
    ``config`` (both shapes), or tensors the table does not know.
    """
    state = _normalise_keys(state)
    if heads is None:
        required, optional = ARCHITECTURES[architecture][1:]
        heads = required + tuple(h for h in optional if _HEAD_KEYS[h] in state)
    used: set[str] = set()
    kw = {"dims": _dims(config), "num_layers": config.num_layers, "layers_path": "bert/encoder",
          "scan_layers": config.scan_layers, "source": source, "used": used}
    params = to_zoo(state, TABLE, LAYER_TABLE, **kw)
    for head in heads:
        params.update(to_zoo(state, HEADS[head], [], **kw))
    word = params["bert"]["word_embeddings"]["embedding"]
    for key, same_as, what in (("cls.predictions.decoder.weight", word, "the word table"),
                               ("cls.predictions.decoder.bias", params.get("mlm_head", {}).get("bias"),
                                "cls.predictions.bias")):
        if key in state and "mlm_head" in heads:
            if same_as is None or not np.array_equal(np.asarray(state[key], np.float32), same_as):
                raise ValueError(f"{source}: {key} is not {what}; zoo's masked-LM head ties them (untied "
                                 "checkpoints cannot be loaded)")
            used.add(key)
    unknown = sorted(k for k in state if k not in used and not IGNORED.search(k))
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} tensors that {architecture}'s table does not read, e.g. "
                         f"{unknown[:3]}")
    return params


def params_to_hf(params: dict[str, Any], config: BERTConfig, *, prefix: bool = True) -> dict[str, Any]:
    """A HF BERT state dict from zoo params ``{"bert": ..., heads...}``: the encoder and every head present.

    ``prefix``: encoder and pooler keys under ``bert.`` (the head models);
    False for ``BertModel``.
    """
    kw = {"dims": _dims(config), "num_layers": config.num_layers, "layers_path": "bert/encoder",
          "scan_layers": config.scan_layers}
    inner = to_hf(params, TABLE, LAYER_TABLE, **kw)
    if "pooler" in params:
        inner.update(to_hf(params, HEADS["pooler"], [], **kw))
    out = {(PREFIX if prefix else "") + k: v for k, v in inner.items()}
    for head in ("mlm_head", "nsp", "classifier"):
        if head in params:
            out.update(to_hf(params, HEADS[head], [], **kw))
    return out


def params_from_hf_bert(state_dict: dict[str, Any], config: BERTConfig) -> dict[str, Any]:
    """zoo ``params`` from a Hugging Face BERT ``state_dict`` (of BertModel, BertForMaskedLM, ...).

    Values may be NumPy arrays or torch tensors. Returns float32 NumPy arrays
    with ``bert`` and whichever of ``pooler``, ``mlm_head``, ``nsp``,
    ``classifier`` the state dict has. Raises ``ValueError`` on missing or
    unknown keys and on shapes that do not fit ``config``.

    Examples:
      >>> import flax.linen as nn
      >>> config = zoo.BERTConfig(vocab_size=64, max_positions=16, block_size=8, num_layers=1, num_heads=2,
      ...                         features=16)
      >>> shapes = nn.unbox(jax.eval_shape(zoo.BERTForMaskedLM(config).init, jax.random.key(0),
      ...                                  jnp.zeros((1, 8), jnp.int32)))["params"]
      >>> zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)        # stand-in weights
      >>> state_dict = zoo.interop.bert.params_to_hf(zeros, config)   # as BertForMaskedLM names them
      >>> state_dict["bert.encoder.layer.0.attention.self.query.weight"].shape      # torch's (out, in)
      (16, 16)
      >>> params = zoo.interop.params_from_hf_bert(state_dict, config)
      >>> sorted(params), params["bert"]["word_embeddings"]["embedding"].shape
      (['bert', 'mlm_head'], (64, 16))
    """
    def numpy(x):
        return np.asarray(x.detach().cpu().float().numpy() if hasattr(x, "detach") else x, np.float32)

    state = _normalise_keys({k: numpy(v) for k, v in state_dict.items()})
    heads = tuple(h for h, key in _HEAD_KEYS.items() if key in state)
    return params_from_hf(state, config, heads=heads, architecture="the BERT", source="params_from_hf_bert")
