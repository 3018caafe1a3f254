"""Hugging Face model directories as zoo runs: ``zoo.load_pretrained(path)`` and ``zoo.export_pretrained(run, out)``.

    run = zoo.load_pretrained("gpt2")            # a local directory: config.json, model.safetensors, tokenizer
    ids = run.tokenizer.encode("Hello, my name is")
    out = zoo.generate(run.model, run.params, ids, 20, temperature=0)
    zoo.export_pretrained(run, "gpt2-again")     # transformers' from_pretrained loads it

A HF directory is a ``config.json`` with weights (``model.safetensors``, shards
with ``model.safetensors.index.json``, or ``pytorch_model.bin`` when torch is
installed) and tokenizer files. ``zoo.load_run`` and every command that takes
a run directory accept one too: a directory with ``config.json`` and no
``run.json`` is loaded here. The conversion is in :mod:`zoo.interop` (one name
table per architecture); nothing is downloaded.

Architectures (``config.json``'s ``architectures``; ``model_type`` alone also works):

    GPT2LMHeadModel, GPT2Model      family "gpt"                    zoo.GPT
    BertForMaskedLM                 family "bert"                   zoo.BERTForMaskedLM
    BertForPreTraining              family "bert"                   zoo.BERTForMaskedLM (the pooler and NSP
                                                                    weights are kept in params: zoo.BERTForPreTraining
                                                                    applies to them)
    BertForSequenceClassification   family "bert-classifier"        zoo.BERTForSequenceClassification
    BertForTokenClassification      family "bert-token-classifier"  zoo.BERTForTokenClassification
    BertModel                       family "bert-encoder"           zoo.BERT (params: the encoder's, and "pooler")

Export writes ``config.json``, ``model.safetensors`` (float32),
``tokenizer.json`` and ``tokenizer_config.json`` for gpt, bert,
bert-classifier (and the imported bert-encoder and bert-token-classifier) runs.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from zoo.interop import bert as hf_bert
from zoo.interop import gpt2 as hf_gpt2
from zoo.run import RUN_JSON, Run

__all__ = ["load_pretrained", "export_pretrained", "is_hf_directory", "SUPPORTED_ARCHITECTURES"]

CONFIG = "config.json"
SUPPORTED_ARCHITECTURES = (*hf_gpt2.ARCHITECTURES, *hf_bert.ARCHITECTURES)


def is_hf_directory(path: str | os.PathLike) -> bool:
    """A directory with ``config.json`` and no zoo ``run.json``."""
    path = Path(path)
    return (path / CONFIG).is_file() and not (path / RUN_JSON).is_file()


def _architecture(hf: dict[str, Any], state: dict[str, Any], where: str) -> str:
    names = hf.get("architectures") or []
    if names:
        if names[0] not in SUPPORTED_ARCHITECTURES:
            raise ValueError(f"{where}: architecture {names[0]!r} is not supported; zoo loads "
                             f"{', '.join(SUPPORTED_ARCHITECTURES)}")
        return names[0]
    kind = hf.get("model_type")
    if kind == "gpt2":
        return "GPT2LMHeadModel"
    if kind == "bert":  # no architectures: the heads present decide
        keys = {k.removeprefix("bert.") for k in state}
        for key, arch in (("cls.seq_relationship.weight", "BertForPreTraining"),
                          ("cls.predictions.bias", "BertForMaskedLM")):
            if key in keys:
                return arch
        return "BertModel"
    raise ValueError(f"{where}: model_type {kind!r} and no architectures; zoo loads "
                     f"{', '.join(SUPPORTED_ARCHITECTURES)}")


def load_pretrained(path: str | os.PathLike, *, scan_layers: bool = True) -> Run:
    """A :class:`zoo.Run` from a local Hugging Face model directory (see the module docstring).

    The run has ``family`` by architecture, ``config`` mapped field by field,
    ``model``, ``params`` (float32, whatever the checkpoint's dtype), the
    ``tokenizer``, ``step`` 0, a default ``train_config`` (zoo's
    ``TrainConfig()``: nothing about training is in a HF directory) and
    ``info`` with ``source == "huggingface"``, the ``architecture``, the
    weights file read and the original ``hf_config``. ``scan_layers=False``
    keeps one parameter subtree per layer.

    Raises ``FileNotFoundError`` for a missing directory, ``config.json``,
    weights or tokenizer files, and ``ValueError`` for an unsupported
    architecture or setting, a tensor whose shape disagrees with the config,
    or a weights file that cannot be read.

    Examples:
      >>> import flax.linen as nn
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> model = zoo.GPT(config)
      >>> shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
      >>> params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])   # stand-in weights
      >>> run = zoo.Run("my-run", "gpt", config, zoo.train.TrainConfig(), model, params,
      ...               zoo.data.ByteTokenizer(), 0, {})
      >>> path = zoo.export_pretrained(run, "my-gpt2")       # or a GPT-2 / BERT directory from the Hub
      >>> hf = zoo.load_pretrained("my-gpt2")
      >>> hf.family, hf.info["architecture"], hf.config == config
      ('gpt', 'GPT2LMHeadModel', True)
    """
    import jax  # noqa: PLC0415

    from zoo.interop.tokenizer import load_hf_tokenizer  # noqa: PLC0415
    from zoo.interop.weights import read_weights  # noqa: PLC0415
    from zoo.models import BERT, GPT, BERTForMaskedLM, BERTForSequenceClassification  # noqa: PLC0415
    from zoo.models import BERTForTokenClassification  # noqa: PLC0415
    from zoo.train.config import TrainConfig  # noqa: PLC0415

    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory; expected a Hugging Face model directory")
    cfg_path = directory / CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG}; expected a Hugging Face model directory (config.json, "
                                "model.safetensors and tokenizer files)")
    try:
        hf = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: not JSON ({e})") from e
    if not isinstance(hf, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    if not (hf.get("architectures") or hf.get("model_type")):
        raise ValueError(f"{cfg_path}: neither architectures nor model_type; zoo loads "
                         f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    # The architecture is checked before the weights are read: a refusal should not wait for gigabytes.
    if hf.get("architectures") and hf["architectures"][0] not in SUPPORTED_ARCHITECTURES:
        _architecture(hf, {}, str(cfg_path))
    state, weights_file = read_weights(directory)
    arch = _architecture(hf, state, str(cfg_path))
    source = str(directory / weights_file)
    info: dict[str, Any] = {"source": "huggingface", "path": str(directory), "architecture": arch,
                            "weights": weights_file, "hf_config": hf}
    if arch in hf_gpt2.ARCHITECTURES:
        family = "gpt"
        config = hf_gpt2.config_from_hf(hf, str(cfg_path)).replace(scan_layers=scan_layers)
        params = hf_gpt2.params_from_hf(state, config, source=source)
        model = GPT(config)
        tokenizer = load_hf_tokenizer(directory, "gpt")
    else:
        family = hf_bert.ARCHITECTURES[arch][0]
        config = hf_bert.config_from_hf(hf, str(cfg_path)).replace(scan_layers=scan_layers)
        params = hf_bert.params_from_hf(state, config, architecture=arch, source=source)
        if family == "bert-encoder":  # zoo.BERT's parameters are the encoder's, at the top level
            params = {**params.pop("bert"), **params}
        model = {"bert": BERTForMaskedLM, "bert-classifier": BERTForSequenceClassification,
                 "bert-token-classifier": BERTForTokenClassification, "bert-encoder": BERT}[family](config)
        tokenizer = load_hf_tokenizer(directory, "bert")
        info["mask_prob"] = 0.15  # BERT's, for zoo eval
        labels = hf.get("id2label")
        if family in ("bert-classifier", "bert-token-classifier") and labels:
            info["labels"] = [labels[k] for k in sorted(labels, key=int)]
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens, more than the model's "
                         f"vocab_size={config.vocab_size}")
    params = jax.tree.map(jax.numpy.asarray, params)
    return Run(directory, family, config, TrainConfig(), model, params, tokenizer, 0, info)


def _bert_architecture_name(run: Run) -> str:
    """The HF architecture a BERT run exports as."""
    heads = {"bert-encoder": "BertModel", "bert-classifier": "BertForSequenceClassification",
             "bert-token-classifier": "BertForTokenClassification"}
    if run.family in heads:
        return heads[run.family]
    return "BertForPreTraining" if "nsp" in run.params and "pooler" in run.params else "BertForMaskedLM"


def _bert_params(run: Run, params: dict[str, Any], arch: str) -> dict[str, Any]:
    """``params`` in the ``{"bert": ..., heads}`` layout of :mod:`zoo.interop.bert`, for ``arch``."""
    if arch == "BertModel":  # zoo.BERT's params are the encoder's, at the top level
        encoder = {k: v for k, v in params.items() if k != "pooler"}
        return {"bert": encoder, **({"pooler": params["pooler"]} if "pooler" in params else {})}
    if arch == "BertForMaskedLM":
        extra = sorted(k for k in params if k in ("pooler", "nsp"))
        if extra:
            warnings.warn(f"export_pretrained: {', '.join(extra)} left out: BertForMaskedLM has no such weights",
                          stacklevel=3)
        return {k: v for k, v in params.items() if k not in extra}
    return params


def export_pretrained(run: Run, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``run`` as a Hugging Face model directory that transformers' ``from_pretrained`` loads.

    ``config.json``, ``model.safetensors`` (float32; a tied head is left out,
    as transformers saves it), ``tokenizer.json`` (checked to give the run's
    ids on sample text) and ``tokenizer_config.json``. GPT runs load with
    ``AutoModelForCausalLM``, BERT masked LMs with ``AutoModelForMaskedLM``,
    classifiers with ``AutoModelForSequenceClassification``.

    Raises ``ValueError`` for a family or a config field the HF architecture
    cannot express (naming it), and for a non-empty ``out_dir`` unless
    ``overwrite`` (files of the same names are then replaced).

    Examples:
      >>> import flax.linen as nn
      >>> config = zoo.GPTConfig(vocab_size=257, block_size=8, num_layers=1, num_heads=2, features=16)
      >>> model = zoo.GPT(config)
      >>> shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
      >>> params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])   # stand-in weights
      >>> run = zoo.Run("my-run", "gpt", config, zoo.train.TrainConfig(), model, params,
      ...               zoo.data.ByteTokenizer(), 0, {})
      >>> path = zoo.export_pretrained(run, "my-gpt2")
      >>> sorted(p.name for p in path.iterdir())
      ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']
    """
    import flax.linen as nn  # noqa: PLC0415
    import jax  # noqa: PLC0415

    from zoo.interop.tokenizer import export_tokenizer  # noqa: PLC0415
    from zoo.interop.weights import write_weights  # noqa: PLC0415

    out = Path(out_dir)
    # Everything that can be refused is checked before any work: the family, the config, the directory.
    if run.family == "gpt":
        config = hf_gpt2.config_to_hf(run.config)
        config.update(bos_token_id=int(run.tokenizer.eot_id), eos_token_id=int(run.tokenizer.eot_id))
    elif run.family.startswith("bert"):
        arch = _bert_architecture_name(run)
        config = hf_bert.config_to_hf(run.config, arch, labels=run.info.get("labels"))
    else:
        raise ValueError(f"{run.run_dir} is a {run.family} run, which has no Hugging Face counterpart in zoo; "
                         "zoo exports gpt and bert runs (bert, bert-classifier)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; expected a directory to write the model into")
    if (out / RUN_JSON).is_file():
        raise ValueError(f"{out} holds a zoo run; export into another directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out} is not empty; choose a new directory or pass overwrite=True (--overwrite)")
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), nn.unbox(run.params))
    if run.family == "gpt":
        tensors = hf_gpt2.params_to_hf(params, run.config)
    else:
        params = _bert_params(run, params, arch)
        tensors = hf_bert.params_to_hf(params, run.config, prefix=arch != "BertModel")
    tokenizer_json, tokenizer_config = export_tokenizer(run.tokenizer)
    tokenizer_config["model_max_length"] = getattr(run.config, "block_size", None) or run.config.max_positions
    out.mkdir(parents=True, exist_ok=True)
    config["zoo_source"] = {"family": run.family, "run": str(run.run_dir), "step": run.step}
    write_weights(tensors, out)
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (out / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return out
