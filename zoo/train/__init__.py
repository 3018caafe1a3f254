"""Language-model pretraining: optimizer, compiled steps, checkpoints, metrics and the loop.

    import zoo
    from zoo.train import TrainConfig, train

    model_config = zoo.GPTConfig(vocab_size=65, block_size=64, num_layers=4, num_heads=4, features=128)
    train(zoo.GPT(model_config), model_config, TrainConfig(), train_tokens, val_tokens, "runs/shakespeare",
          flops_per_token=zoo.gpt_flops_per_token(model_config))

Modules: :mod:`~zoo.train.config` (TrainConfig), :mod:`~zoo.train.optim`
(AdamW, schedule), :mod:`~zoo.train.step` (jitted train/eval steps, data
parallel), :mod:`~zoo.train.checkpoint` (orbax), :mod:`~zoo.train.metrics`
(metrics.jsonl, loss.png, MFU peak), :mod:`~zoo.train.trainer` (the loop),
:mod:`~zoo.train.fit` (the plain loop: jitted updates over a batch function, for experiments).
"""

from zoo.train.checkpoint import Checkpointer, latest_checkpoint_step
from zoo.train.config import TrainConfig
from zoo.train.fit import fit
from zoo.train.metrics import append_metrics, peak_flops, plot_losses, read_metrics
from zoo.train.optim import make_optimizer, make_schedule, weight_decay_mask
from zoo.train.step import (
    TrainState,
    abstract_train_state,
    init_train_state,
    make_eval_step,
    make_mesh,
    make_train_step,
    shard_batch,
)
from zoo.train.objectives import NEXT_TOKEN, Objective, masked_mean_cross_entropy, next_token_loss
from zoo.train.trainer import EVAL_SEED, random_windows, train

__all__ = [
    "EVAL_SEED",
    "NEXT_TOKEN",
    "Objective",
    "masked_mean_cross_entropy",
    "Checkpointer",
    "TrainConfig",
    "TrainState",
    "abstract_train_state",
    "append_metrics",
    "fit",
    "init_train_state",
    "latest_checkpoint_step",
    "make_eval_step",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "next_token_loss",
    "peak_flops",
    "plot_losses",
    "random_windows",
    "read_metrics",
    "shard_batch",
    "train",
    "weight_decay_mask",
]
