"""The gallery-size curve as a picture: mAP and top-1 against the gallery size (log scale),
one line per model (:func:`~person_search.evaluation.gallery_curve.gallery_size_curve`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from person_search.evaluation.gallery_curve import GalleryCurvePoint
from person_search.utils.file_io import atomic_write

__all__ = ["plot_gallery_curves"]


def plot_gallery_curves(
    curves: Mapping[str, Sequence[GalleryCurvePoint]], path: str, *, title: str = ""
) -> None:
    """Write a PNG with two panels (mAP, top-1 vs gallery size), one line per ``curves``
    entry (label -> points), atomically."""
    if not curves:
        raise ValueError("no curve to plot")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    figure = Figure(figsize=(10, 4), dpi=120)
    for column, (key, name) in enumerate((("mAP", "mAP (%)"), ("top1", "top-1 (%)"))):
        axes = figure.add_subplot(1, 2, column + 1)
        for label, points in curves.items():
            sizes = [p.gallery_size for p in points]
            axes.plot(sizes, [getattr(p, key) for p in points], marker="o", label=label)
        axes.set_xscale("log")
        ticks = sorted({p.gallery_size for points in curves.values() for p in points})
        axes.set_xticks(ticks)
        axes.set_xticklabels([str(t) for t in ticks])
        axes.minorticks_off()
        axes.set_xlabel("gallery size")
        axes.set_ylabel(name)
        axes.grid(True, alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write(path, lambda f: f.write(buffer.getvalue()), mode="wb")
