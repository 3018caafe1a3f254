"""Training hyperparameters: one frozen dataclass, overridable from the command line (tyro)."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from zoo.errors import config_error

__all__ = ["TrainConfig"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, evaluation and checkpointing. Defaults are nanoGPT's shakespeare-char CPU run.

    The training window (block size) and the vocabulary belong to the model
    config; the vocabulary size always comes from the tokenizer.

    Examples:
      >>> cfg = zoo.train.TrainConfig(batch_size=2, max_steps=10, warmup_steps=2, learning_rate=3e-3)
      >>> cfg.decay_steps, cfg.grad_clip, cfg.on_nonfinite
      (None, 1.0, 'stop')
      >>> try:
      ...     zoo.train.TrainConfig(batch_size=0)
      ... except ValueError as error:
      ...     print(error)
      TrainConfig: batch_size=0, expected a positive int
    """

    batch_size: int = 12  # sequences per optimizer step (split over grad_accum_steps micro-batches)
    max_steps: int = 2000  # optimizer steps
    learning_rate: float = 1e-3  # peak, after warmup
    min_learning_rate: float = 1e-4  # end of the cosine decay (nanoGPT: learning_rate / 10)
    warmup_steps: int = 100  # linear warmup from 0
    decay_steps: int | None = None  # cosine decay length; None = max_steps
    beta1: float = 0.9
    beta2: float = 0.99  # nanoGPT's choice for small models (0.95 for GPT-2 sizes)
    weight_decay: float = 0.1  # AdamW, on matrices only (not biases, norms)
    grad_clip: float = 1.0  # global-norm clipping; 0 = off
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    eval_interval: int = 250  # validation every this many steps (and at the end)
    eval_batches: int = 20  # batches per split per evaluation
    log_interval: int = 10  # steps between progress/metrics lines
    checkpoint_interval: int = 1000  # steps between checkpoints (and at the end, and on Ctrl-C)
    keep_checkpoints: int = 2
    seed: int = 0  # parameters, dropout and data windows all derive from it
    on_nonfinite: Literal["stop", "skip"] = "stop"  # a NaN/inf loss stops the run, or skips the update

    def __post_init__(self):
        def bad(field, expected):
            raise config_error("TrainConfig", field, getattr(self, field), expected)

        for f in ("batch_size", "max_steps", "grad_accum_steps", "eval_interval", "eval_batches",
                  "log_interval", "checkpoint_interval", "keep_checkpoints"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                bad(f, "a positive int")
        if self.batch_size % self.grad_accum_steps:
            bad("batch_size", f"a multiple of grad_accum_steps={self.grad_accum_steps}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            bad("warmup_steps", "a non-negative int")
        if self.decay_steps is not None and (not isinstance(self.decay_steps, int) or self.decay_steps < 1):
            bad("decay_steps", "a positive int, or None for max_steps")
        # Each float on its own, finiteness first: NaN fails every comparison, and an error must name
        # the field that holds it (a NaN learning rate was once reported against min_learning_rate).
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            bad("learning_rate", "a finite number > 0")
        if not math.isfinite(self.min_learning_rate) or not 0 <= self.min_learning_rate <= self.learning_rate:
            bad("min_learning_rate", f"a number in [0, learning_rate={self.learning_rate}]")
        for f in ("beta1", "beta2"):
            if not math.isfinite(getattr(self, f)) or not 0 <= getattr(self, f) < 1:
                bad(f, "a number in [0, 1)")
        for f in ("weight_decay", "grad_clip"):
            if not math.isfinite(getattr(self, f)) or getattr(self, f) < 0:
                bad(f, "a finite number >= 0")
        if self.on_nonfinite not in ("stop", "skip"):
            bad("on_nonfinite", "'stop' or 'skip'")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)
