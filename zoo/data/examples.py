"""Example batches: one row of zeros with the shapes a model trains on, for each objective.

An :class:`~zoo.train.objectives.Objective` initialises a model (and a
checkpoint is restored) against ``example_batch(model_config)``, so a run
loads without its data. Each function takes the model's config and returns a
batch dict of host arrays with a leading batch axis of 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .masking import max_predictions

__all__ = [
    "next_token_example", "encoder_example", "masked_lm_example", "sequence_classification_example",
    "token_classification_example", "translation_example",
]

Batch = dict[str, np.ndarray]


def next_token_example(config: Any) -> Batch:
    """``inputs``, ``targets`` (1, block_size) int32 (GPT, the recurrent LMs)."""
    zeros = np.zeros((1, config.block_size), np.int32)
    return {"inputs": zeros, "targets": zeros}


def encoder_example(config: Any) -> Batch:
    """``ids``, ``segment_ids`` (1, block_size) and ``seq_lengths`` (1,), int32 (BERT's inputs)."""
    t = config.block_size
    return {
        "ids": np.zeros((1, t), np.int32),
        "segment_ids": np.zeros((1, t), np.int32),
        "seq_lengths": np.full((1,), t, np.int32),
    }


def masked_lm_example(config: Any) -> Batch:
    """BERT's inputs and P = ``max_predictions(block_size)`` prediction slots (1, P)."""
    p = max_predictions(config.block_size)
    return {
        **encoder_example(config),
        "mlm_positions": np.zeros((1, p), np.int32),
        "mlm_labels": np.zeros((1, p), np.int32),
        "mlm_weights": np.zeros((1, p), np.float32),
    }


def sequence_classification_example(config: Any) -> Batch:
    """BERT's inputs and ``labels`` (1,) int32."""
    return {**encoder_example(config), "labels": np.zeros((1,), np.int32)}


def token_classification_example(config: Any) -> Batch:
    """BERT's inputs, ``labels`` (1, block_size) int32 and ``label_weights`` (1, block_size) float32."""
    t = config.block_size
    labels = {"labels": np.zeros((1, t), np.int32), "label_weights": np.zeros((1, t), np.float32)}
    return {**encoder_example(config), **labels}


def translation_example(config: Any) -> Batch:
    """``src`` (1, max_source_len), ``tgt_in`` / ``tgt_out`` (1, max_target_len) and their lengths (1,), int32."""
    s, t = config.max_source_len, config.max_target_len
    return {
        "src": np.zeros((1, s), np.int32), "src_lengths": np.array([s], np.int32),
        "tgt_in": np.zeros((1, t), np.int32), "tgt_out": np.zeros((1, t), np.int32),
        "tgt_lengths": np.array([t], np.int32),
    }
