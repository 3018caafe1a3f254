"""Interop: weights, configs and tokenizers in and out (Hugging Face GPT-2 and BERT without torch; PyTorch RNNs).

Conversion only (the name tables, safetensors files, tokenizer files); the
``zoo.Run`` a directory loads into, and the export of a run, are
:func:`zoo.load_pretrained` and :func:`zoo.export_pretrained` (``zoo/pretrained.py``).

* :mod:`zoo.interop.gpt2`: GPT-2 <-> :class:`zoo.GPT` (config fields and name table);
* :mod:`zoo.interop.bert`: BERT <-> zoo's BERT models;
* :mod:`zoo.interop.convert`: how a table row moves numbers (reshape, transpose, stack);
* :mod:`zoo.interop.weights`: model.safetensors, shards, pytorch_model.bin (torch only);
* :mod:`zoo.interop.tokenizer`: tokenizer.json, vocab.json + merges.txt, vocab.txt, and export;
* :mod:`zoo.interop.torch_rnn`: torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` state dicts <-> zoo's
  ``RNN``, ``Bidirectional``, ``RNNStack`` (no torch needed for state dicts of NumPy arrays).
"""

from zoo.interop.bert import params_from_hf_bert
from zoo.interop.tokenizer import export_tokenizer, load_hf_tokenizer
from zoo.interop.torch_rnn import (
    TorchRNNSpec,
    carry_from_torch,
    carry_to_torch,
    from_torch_rnn,
    to_torch_rnn,
    torch_rnn_spec,
)
from zoo.interop.weights import read_weights, write_weights

__all__ = ["params_from_hf_bert", "load_hf_tokenizer", "export_tokenizer", "read_weights", "write_weights",
           "from_torch_rnn", "to_torch_rnn", "torch_rnn_spec", "carry_from_torch", "carry_to_torch", "TorchRNNSpec"]
