"""Figures for files, without pyplot: library code must not switch a notebook's backend.

``matplotlib.use("Agg")`` (or pyplot's global figure manager) inside a library call would
silently turn off inline plots in the notebook that called it. A :class:`matplotlib.figure.Figure`
made directly has no backend state: draw on it, ``fig.savefig(path)``, and drop it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["subplots"]


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             dpi: float | None = None, **kwargs: Any):
    """``(figure, axes)`` like ``pyplot.subplots``, on a standalone Figure (no pyplot, no backend change)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)
