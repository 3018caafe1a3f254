"""Generic layers: recurrent cells and drivers, attention, embeddings, Transformer blocks."""

from zoo.layers.attention import (
    attention_weights,
    causal_mask,
    combine_masks,
    dot_product_attention,
    make_attention_mask,
    padding_mask,
)

from zoo.layers.embeddings import (
    Embed,
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    apply_rope,
    sinusoidal_table,
)
from zoo.layers.multihead import MultiHeadAttention, reorder_cache
from zoo.layers.transformer import (
    Decoder,
    DecoderBlock,
    Encoder,
    EncoderBlock,
    FeedForward,
    TransformerBlock,
    TransformerConfig,
    TransformerStack,
)
from zoo.layers.cells import CELLS, GRUCell, LSTMCell, MinGRUCell, MinLSTMCell, RecurrentCell, SimpleRNNCell
from zoo.layers.cells import cell_param_count
from zoo.layers.recurrent import RNN, Bidirectional, RNNStack
from zoo.layers.scan import flip_sequences, fused_recurrence, lengths_to_mask, linear_recurrence

__all__ = [
    "RecurrentCell", "SimpleRNNCell", "LSTMCell", "GRUCell", "MinGRUCell", "MinLSTMCell", "CELLS", "cell_param_count",
    "RNN", "Bidirectional", "RNNStack",
    "fused_recurrence", "linear_recurrence", "flip_sequences", "lengths_to_mask",
    "dot_product_attention", "attention_weights", "causal_mask", "padding_mask",
    "make_attention_mask", "combine_masks",
    "Embed", "LearnedPositionEmbedding", "SinusoidalPositionEmbedding", "apply_rope", "sinusoidal_table",
    "MultiHeadAttention", "reorder_cache",
    "TransformerConfig", "FeedForward", "TransformerBlock", "EncoderBlock", "DecoderBlock",
    "TransformerStack", "Encoder", "Decoder",
]
