"""The arithmetic behind ``zoo bench``: parameters, FLOPs, sequential depth, crossovers, rooflines.

Everything here is plain Python (no JAX), so the parent process of the
benchmark can plan and report without starting a device, and the tests can
check each formula against a case worked by hand.

**Layers.** Every layer maps ``(batch, T, width)`` to ``(batch, T, width)``
and is made of ``m`` square ``width x width`` matrices plus ``b`` bias
vectors (:data:`LAYER_SHAPES`): SimpleRNN ``tanh(W x + U h + b)`` has m=2;
LSTM four gates from x and h, m=8; GRU (reset-after) m=6 with an extra
recurrent bias; minGRU (Feng et al. 2024) two gates from x only, m=2;
minLSTM three, m=3; causal self-attention the q, k, v and output
projections, m=4. A token passes each matrix once, so the forward pass
costs ``2 m width**2`` FLOPs per token, plus, for causal attention,
``2 width (T + 1)`` for the two products with the keys (QK^T and AV): query
t sees t keys, (T + 1) / 2 on average, and each product costs
``2 width`` per key. That counts useful work only: a dense implementation
computes the masked half too (XLA's cost analysis shows it), and PaLM's
convention (:func:`zoo.models.gpt.gpt_flops_per_token`, ``4 width T``)
counts it as well, which would put a causal kernel that skips masked blocks
above the matmul peak. Training (forward and backward) costs three times the
forward pass. Biases, gates' elementwise
arithmetic, softmax and the scan's combine are left out: they are a few
operations per element against ``width`` per element for a matrix.

**Matched parameters.** The layers are compared at one parameter budget,
that of the attention layer of width ``d``; :func:`matched_width` finds
each recurrent layer's width (a multiple of 8) whose count is closest.

**Sequential depth.** A recurrent layer run by ``lax.scan`` takes T
dependent steps; minGRU and minLSTM by an associative scan take about
log2 T; attention takes one (its work is T^2, but all of it in parallel).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

__all__ = [
    "LAYER_SHAPES",
    "LAYER_KINDS",
    "layer_base",
    "layer_params",
    "layer_flops_per_token",
    "causal_attention_flops",
    "matched_width",
    "sequential_depth",
    "Crossover",
    "crossovers",
    "roofline",
]

# base kind -> (square width x width matrices, bias vectors of length width)
LAYER_SHAPES: dict[str, tuple[int, int]] = {
    "simple_rnn": (2, 1),
    "lstm": (8, 4),
    "gru": (6, 4),  # 3 gates' input and recurrent kernels and biases, plus the reset-after recurrent bias
    "min_gru": (2, 2),
    "min_lstm": (3, 3),
    "attention": (4, 4),  # q, k, v, output projections, with biases
}

# the layers the suite runs: kind -> (base kind, how the sequence is processed)
LAYER_KINDS: dict[str, tuple[str, str]] = {
    "simple_rnn": ("simple_rnn", "sequential"),
    "lstm": ("lstm", "sequential"),
    "gru": ("gru", "sequential"),
    "min_gru": ("min_gru", "parallel_scan"),
    "min_gru_seq": ("min_gru", "sequential"),
    "min_lstm": ("min_lstm", "parallel_scan"),
    "min_lstm_seq": ("min_lstm", "sequential"),
    "attention_dense": ("attention", "parallel"),
    "attention_blockwise": ("attention", "parallel"),
    "attention_cudnn": ("attention", "parallel"),
}


def layer_base(kind: str) -> str:
    """The base kind of a layer kind (``min_gru_seq`` -> ``min_gru``); a ValueError lists the valid ones."""
    if kind in LAYER_KINDS:
        return LAYER_KINDS[kind][0]
    if kind in LAYER_SHAPES:
        return kind
    raise ValueError(f"layer kind must be one of {sorted(LAYER_KINDS)}, got {kind!r}")


def layer_params(kind: str, width: int) -> int:
    """Parameters of one layer of ``width`` units reading ``width`` inputs."""
    m, b = LAYER_SHAPES[layer_base(kind)]
    return m * width * width + b * width


def layer_flops_per_token(kind: str, width: int, seq_len: int, *, train: bool = False) -> int:
    """Analytic FLOPs per token: forward ``2 m w^2`` (+ ``2 w (T + 1)`` for causal attention); training 3x that."""
    base = layer_base(kind)
    m, _ = LAYER_SHAPES[base]
    forward = 2 * m * width * width
    if base == "attention":
        forward += causal_attention_flops(width, seq_len)
    return 3 * forward if train else forward


def causal_attention_flops(width: int, seq_len: int) -> int:
    """Forward FLOPs per token of QK^T and AV under a causal mask: ``2 width (T + 1)`` (no masked pairs)."""
    return 2 * width * (seq_len + 1)


def matched_width(kind: str, target_params: int, multiple: int = 8, max_width: int = 16384) -> int:
    """The width (a multiple of ``multiple``) whose layer has the parameter count closest to the target."""
    if target_params < 1:
        raise ValueError(f"matched_width: target_params must be >= 1, got {target_params}")
    widths = range(multiple, max_width + 1, multiple)
    return min(widths, key=lambda w: (abs(layer_params(kind, w) - target_params), w))


def sequential_depth(kind: str, seq_len: int) -> tuple[int, str]:
    """(dependent steps for a sequence of ``seq_len``, the formula): (T, "T"), (ceil log2 T, "log2 T") or (1, "1")."""
    if kind not in LAYER_KINDS:
        raise ValueError(f"layer kind must be one of {sorted(LAYER_KINDS)}, got {kind!r}")
    how = LAYER_KINDS[kind][1]
    if how == "sequential":
        return seq_len, "T"
    if how == "parallel_scan":
        return max(1, math.ceil(math.log2(seq_len))), "log2 T"
    return 1, "1"


@dataclasses.dataclass(frozen=True)
class Crossover:
    """Where series ``a`` and ``b`` cross: at ``x`` (interpolated), ``a`` goes from ``before`` to ``after`` b.

    ``before``/``after`` are "above" or "below": e.g. before="above",
    after="below" means a was faster (higher) at smaller x and b is faster
    past the crossover.
    """

    x: float
    y: float
    before: str
    after: str
    between: tuple[float, float]


def crossovers(xs: Sequence[float], a: Sequence[float | None], b: Sequence[float | None]) -> list[Crossover]:
    """The points where ``a`` and ``b`` cross, interpolated linearly in log-log space.

    ``xs`` increase; ``a`` and ``b`` are positive values (e.g. tokens/s) or
    None where there is no measurement (OOM); only neighbouring measured
    points are compared. A point where the two are exactly equal and that
    separates a strict sign change is reported at that point.
    """
    if len(xs) != len(a) or len(xs) != len(b):
        raise ValueError(f"crossovers: xs, a and b must have one length, got {len(xs)}, {len(a)}, {len(b)}")
    if any(x1 <= x0 for x0, x1 in zip(xs, xs[1:])):
        raise ValueError(f"crossovers: xs must increase, got {list(xs)}")
    pts = [(x, ya, yb) for x, ya, yb in zip(xs, a, b) if ya is not None and yb is not None]
    if any(v <= 0 for _, ya, yb in pts for v in (ya, yb)) or any(x <= 0 for x, _, _ in pts):
        raise ValueError("crossovers: xs and the values must be positive (log-log interpolation)")
    out: list[Crossover] = []
    signed = [(x, ya, yb, math.log(ya / yb)) for x, ya, yb in pts]
    last = None  # the last point with a strict sign
    for i, (x, ya, yb, r) in enumerate(signed):
        if r == 0:
            continue
        if last is not None and (last[3] > 0) != (r > 0):
            x0, ya0, _, r0 = last
            between = (x0, x)
            exact = [p for p in signed[signed.index(last) + 1 : i] if p[3] == 0]
            if exact:
                xc, yc = exact[0][0], exact[0][1]
            else:
                t = r0 / (r0 - r)
                lx = math.log(x0) + t * (math.log(x) - math.log(x0))
                ly = math.log(ya0) + t * (math.log(ya) - math.log(ya0))
                xc, yc = math.exp(lx), math.exp(ly)
            before, after = ("above", "below") if r0 > 0 else ("below", "above")
            out.append(Crossover(xc, yc, before, after, between))
        last = (x, ya, yb, r)
    return out


def roofline(intensity: float, peak_flops: float, bandwidth: float) -> float:
    """Attainable FLOP/s at ``intensity`` FLOPs per byte: min(peak, bandwidth * intensity)."""
    if intensity <= 0 or peak_flops <= 0 or bandwidth <= 0:
        raise ValueError(f"roofline: arguments must be positive, got {intensity}, {peak_flops}, {bandwidth}")
    return min(peak_flops, bandwidth * intensity)
