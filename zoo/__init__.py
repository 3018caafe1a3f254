"""zoo: a JAX functional model zoo, from recurrent networks to Transformers.

The public API is flat::

    import zoo
    rnn = zoo.RNN(zoo.LSTMCell(features=256))
"""

from zoo._version import __version__
from zoo.checks import checked
from zoo.layers import (
    RNN,
    attention_weights,
    causal_mask,
    combine_masks,
    dot_product_attention,
    make_attention_mask,
    padding_mask,
    Bidirectional,
    GRUCell,
    LSTMCell,
    MinGRUCell,
    MinLSTMCell,
    RecurrentCell,
    RNNStack,
    SimpleRNNCell,
    flip_sequences,
    fused_recurrence,
    lengths_to_mask,
    linear_recurrence,
)

__all__ = [
    "__version__",
    "checked",
    "RecurrentCell",
    "SimpleRNNCell",
    "LSTMCell",
    "GRUCell",
    "MinGRUCell",
    "MinLSTMCell",
    "RNN",
    "Bidirectional",
    "RNNStack",
    "fused_recurrence",
    "linear_recurrence",
    "flip_sequences",
    "lengths_to_mask",
    "dot_product_attention",
    "attention_weights",
    "causal_mask",
    "padding_mask",
    "make_attention_mask",
    "combine_masks",
]
