"""The arithmetic behind ``zoo bench``: parameters, FLOPs, sequential depth, crossovers, rooflines.

Everything here is plain arithmetic (no JAX computation), so the parent process
of the benchmark can plan and report without starting a device, and the tests can
check each formula against a case worked by hand.

**Layers.** Every layer maps ``(batch, T, width)`` to ``(batch, T, width)``
and is made of ``m`` square ``width x width`` matrices plus ``b`` bias
vectors: a recurrent layer is a cell of :data:`zoo.layers.CELLS` (its count
is :func:`zoo.layers.cell_param_count`: SimpleRNN m=2, LSTM m=8, GRU
(reset-after) m=6, minGRU m=2, minLSTM m=3), causal self-attention has the
q, k, v and output projections, m=4. A token passes each matrix once, so
the forward pass costs ``2 m width**2`` FLOPs per token, plus, for causal
attention, ``2 width (T + 1)`` for the two products with the keys (QK^T and
AV): query t sees t keys, (T + 1) / 2 on average, and each product costs
``2 width`` per key. That counts useful work only: a dense implementation
computes the masked half too (XLA's cost analysis shows it), and PaLM's
convention (:func:`zoo.models.gpt.gpt_flops_per_token`, ``4 width T``)
counts it as well, which would put a causal kernel that skips masked blocks
above the matmul peak. Training (forward and backward) costs three times the
forward pass. Biases, gates' elementwise arithmetic, softmax and the scan's
combine are left out: they are a few operations per element against
``width`` per element for a matrix.

**Matched parameters.** The layers are compared at one parameter budget,
that of the attention layer of width ``d``: :func:`zoo.registry.matched_width`
finds each recurrent layer's width (a multiple of 8) whose count is closest.

**Sequential depth.** A recurrent layer run by ``lax.scan`` takes T
dependent steps; minGRU and minLSTM by an associative scan take about
log2 T; attention takes one (its work is T^2, but all of it in parallel).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from zoo.layers.cells import CELLS, cell_param_count

__all__ = [
    "LAYER_KINDS",
    "canonical",
    "layer_base",
    "make_cell",
    "layer_params",
    "layer_flops_per_token",
    "causal_attention_flops",
    "sequential_depth",
    "Crossover",
    "crossovers",
    "roofline",
]

# the layers the suite runs: kind -> (base kind: a cell of zoo.layers.CELLS or attention, how the sequence is run)
LAYER_KINDS: dict[str, tuple[str, str]] = {
    "rnn": ("rnn", "sequential"),
    "lstm": ("lstm", "sequential"),
    "gru": ("gru", "sequential"),
    "mingru": ("mingru", "parallel_scan"),
    "mingru_seq": ("mingru", "sequential"),
    "minlstm": ("minlstm", "parallel_scan"),
    "minlstm_seq": ("minlstm", "sequential"),
    "attention_dense": ("attention", "parallel"),
    "attention_blockwise": ("attention", "parallel"),
    "attention_cudnn": ("attention", "parallel"),
}
# the spellings of zoo 0.1's benchmarks, still read from stored results
LEGACY_NAMES = {"simple_rnn": "rnn", "min_gru": "mingru", "min_gru_seq": "mingru_seq", "min_lstm": "minlstm",
                "min_lstm_seq": "minlstm_seq"}


def canonical(kind: str) -> str:
    """The one spelling of a layer kind (``min_gru`` -> ``mingru``: stored results use the old ones)."""
    return LEGACY_NAMES.get(kind, kind)


def layer_base(kind: str) -> str:
    """The base kind of a layer kind (``mingru_seq`` -> ``mingru``); a ValueError lists the valid ones."""
    kind = canonical(kind)
    if kind in LAYER_KINDS:
        return LAYER_KINDS[kind][0]
    if kind == "attention" or kind in CELLS:
        return kind
    raise ValueError(f"layer kind must be one of {sorted(LAYER_KINDS)}, got {kind!r}")


def make_cell(kind: str, features: int, **kwargs):
    """The zoo cell of a recurrent layer kind (``mingru_seq``: minGRU run step by step, not by associative scan)."""
    options = {}
    if layer_base(kind) in ("mingru", "minlstm"):  # explicit: the default (None) is chosen per platform
        options = {"method": "sequential" if canonical(kind).endswith("_seq") else "associative"}
    return CELLS[layer_base(kind)](features=features, **options, **kwargs)


def layer_params(kind: str, width: int) -> int:
    """Parameters of one layer of ``width`` units reading ``width`` inputs."""
    base = layer_base(kind)
    if base == "attention":
        return 4 * width * width + 4 * width  # q, k, v, output projections, with biases
    return cell_param_count(base, width, width)


def layer_flops_per_token(kind: str, width: int, seq_len: int, *, train: bool = False) -> int:
    """Analytic FLOPs per token: forward ``2 m w^2`` (+ ``2 w (T + 1)`` for causal attention); training 3x that."""
    # a layer has m w^2 + b w parameters (m matrices, b bias vectors): its counts at widths 1 and 2 give m
    m = (layer_params(kind, 2) - 2 * layer_params(kind, 1)) // 2
    forward = 2 * m * width * width
    if layer_base(kind) == "attention":
        forward += causal_attention_flops(width, seq_len)
    return 3 * forward if train else forward


def causal_attention_flops(width: int, seq_len: int) -> int:
    """Forward FLOPs per token of QK^T and AV under a causal mask: ``2 width (T + 1)`` (no masked pairs)."""
    return 2 * width * (seq_len + 1)


def sequential_depth(kind: str, seq_len: int) -> tuple[int, str]:
    """(dependent steps for a sequence of ``seq_len``, the formula): (T, "T"), (ceil log2 T, "log2 T") or (1, "1")."""
    kind = canonical(kind)
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
