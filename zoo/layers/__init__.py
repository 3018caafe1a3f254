"""Generic layers: recurrent cells and drivers (attention and Transformer blocks come later)."""

from zoo.layers.cells import GRUCell, LSTMCell, MinGRUCell, MinLSTMCell, RecurrentCell, SimpleRNNCell
from zoo.layers.recurrent import RNN, Bidirectional, RNNStack
from zoo.layers.scan import flip_sequences, fused_recurrence, lengths_to_mask, linear_recurrence

__all__ = [
    "RecurrentCell", "SimpleRNNCell", "LSTMCell", "GRUCell", "MinGRUCell", "MinLSTMCell",
    "RNN", "Bidirectional", "RNNStack",
    "fused_recurrence", "linear_recurrence", "flip_sequences", "lengths_to_mask",
]
