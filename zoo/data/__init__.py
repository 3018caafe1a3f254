"""Data for training: corpora, tokenizers, token streams and batches; masked-LM and classification data.

A typical run::

    from zoo import data

    corpus = data.load_corpus("stdlib")                  # or a path, a glob, "hf:NAME[:CONFIG]"
    tok = data.make_tokenizer("byte", corpus.train)      # or "char", "bpe" (train split only)
    tokens = data.tokenize_corpus(corpus, tok, cache_dir="~/.cache/zoo/tokens")
    x, y = data.get_batch(tokens.train, batch_size=32, block_size=256, seed=0, step=step)

``corpora`` reads text (see :func:`load_corpus` for the specs), ``tokenizers``
turns it into ids, ``pipeline`` joins documents into streams, caches them and
cuts (B, T) windows from them. For BERT, ``masking`` makes masked-LM batches
from a WordPiece token stream (:func:`mlm_batch`), and ``labeled`` loads,
encodes and batches sequence-classification data (:func:`load_labeled`)::

    tok = data.make_tokenizer("wordpiece", corpus.train)            # [PAD] [UNK] [CLS] [SEP] [MASK] = 0..4
    tokens = data.tokenize_corpus(corpus, tok)                       # documents joined by [SEP]
    batch = data.mlm_batch(tokens.train, 32, 128, seed=0, step=step, **data.mlm_special_ids(tok))
    task = data.load_labeled("synthetic:sentiment")                  # or a .csv/.jsonl/.parquet, "hf:..."
    enc = data.encode_examples(task.train, tok, 64, task.label_to_id)
    batch = data.classification_batch(enc, 32, seed=0, step=step)
"""

from .corpora import Corpus, load_corpus, split_documents, stdlib_files, stdlib_split, val_indices
from .labeled import (
    SYNTHETIC_TASKS,
    Example,
    LabeledData,
    classification_batch,
    encode_examples,
    eval_batches,
    load_labeled,
    longest_first,
)
from .masking import mask_tokens, max_predictions, mlm_batch, mlm_special_ids
from .translation import TASKS as TRANSLATION_TASKS
from .translation import exact_match, load_parallel_corpus, toy_pairs
from .pipeline import TokenizedCorpus, cache_key, get_batch, storage_dtype, tokenize_corpus
from .tokenizers import (
    EOT,
    KINDS,
    UNK,
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    WordPieceTokenizer,
    load_tokenizer,
    make_tokenizer,
)

__all__ = [
    "EOT",
    "KINDS",
    "SYNTHETIC_TASKS",
    "UNK",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "Corpus",
    "Example",
    "LabeledData",
    "TokenizedCorpus",
    "Tokenizer",
    "WordPieceTokenizer",
    "cache_key",
    "classification_batch",
    "encode_examples",
    "eval_batches",
    "get_batch",
    "load_corpus",
    "load_labeled",
    "TRANSLATION_TASKS",
    "exact_match",
    "load_parallel_corpus",
    "toy_pairs",
    "load_tokenizer",
    "longest_first",
    "make_tokenizer",
    "mask_tokens",
    "max_predictions",
    "mlm_batch",
    "mlm_special_ids",
    "split_documents",
    "stdlib_files",
    "stdlib_split",
    "storage_dtype",
    "tokenize_corpus",
    "val_indices",
]
