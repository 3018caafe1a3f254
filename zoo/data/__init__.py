"""Data for language-model pretraining: corpora, tokenizers, token streams and batches.

A typical run::

    from zoo import data

    corpus = data.load_corpus("stdlib")                  # or a path, a glob, "hf:NAME[:CONFIG]"
    tok = data.make_tokenizer("byte", corpus.train)      # or "char", "bpe" (train split only)
    tokens = data.tokenize_corpus(corpus, tok, cache_dir="~/.cache/zoo/tokens")
    x, y = data.get_batch(tokens.train, batch_size=32, block_size=256, seed=0, step=step)

``corpora`` reads text (see :func:`load_corpus` for the specs), ``tokenizers``
turns it into ids, ``pipeline`` joins documents into streams, caches them and
cuts (B, T) windows from them.
"""

from .corpora import Corpus, load_corpus, split_documents, stdlib_files, stdlib_split, val_indices
from .pipeline import TokenizedCorpus, cache_key, get_batch, storage_dtype, tokenize_corpus
from .tokenizers import (
    EOT,
    KINDS,
    UNK,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    make_tokenizer,
)

__all__ = [
    "EOT",
    "KINDS",
    "UNK",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "Corpus",
    "TokenizedCorpus",
    "Tokenizer",
    "cache_key",
    "get_batch",
    "load_corpus",
    "load_tokenizer",
    "make_tokenizer",
    "split_documents",
    "stdlib_files",
    "stdlib_split",
    "storage_dtype",
    "tokenize_corpus",
    "val_indices",
]
