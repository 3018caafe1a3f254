"""Hugging Face interop: weights, configs and tokenizers of GPT-2 and BERT, in and out, without torch.

Conversion only (the name tables, safetensors files, tokenizer files); the
``zoo.Run`` a directory loads into, and the export of a run, are
:func:`zoo.load_pretrained` and :func:`zoo.export_pretrained` (``zoo/pretrained.py``).

* :mod:`zoo.interop.gpt2`: GPT-2 <-> :class:`zoo.GPT` (config fields and name table);
* :mod:`zoo.interop.bert`: BERT <-> zoo's BERT models;
* :mod:`zoo.interop.convert`: how a table row moves numbers (reshape, transpose, stack);
* :mod:`zoo.interop.weights`: model.safetensors, shards, pytorch_model.bin (torch only);
* :mod:`zoo.interop.tokenizer`: tokenizer.json, vocab.json + merges.txt, vocab.txt, and export.
"""

from zoo.interop.bert import params_from_hf_bert
from zoo.interop.tokenizer import export_tokenizer, load_hf_tokenizer
from zoo.interop.weights import read_weights, write_weights

__all__ = ["params_from_hf_bert", "load_hf_tokenizer", "export_tokenizer", "read_weights", "write_weights"]
