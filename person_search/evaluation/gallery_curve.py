"""Search accuracy against gallery size (CUHK-SYSU's ``TestG<N>.mat`` protocols, N = 50 ..
4000): the curve of OIM's Fig. 4 and every follow-up paper's, from a saved results file.

Every ``gallery_<N>`` variant of the protocol is evaluated with the detection threshold and
CBGM setting of the run that saved the file (or those given), so the N = 100 point is that
run's headline number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .cbgm import CBGMParams
from .saved_results import SavedSearchResults
from .search_metrics import evaluate_search

__all__ = ["GalleryCurvePoint", "gallery_size_curve", "gallery_sizes"]

_GALLERY_VARIANT = re.compile(r"^gallery_(\d+)$")


@dataclass(frozen=True)
class GalleryCurvePoint:
    """Search accuracy (percent) of one gallery size over its evaluated queries."""

    gallery_size: int
    mAP: float
    top1: float
    num_queries: int


def gallery_sizes(variant_names) -> dict[int, str]:
    """Gallery size -> variant name of the ``gallery_<N>`` variants among ``variant_names``."""
    out = {}
    for name in variant_names:
        match = _GALLERY_VARIANT.match(name)
        if match:
            out[int(match.group(1))] = name
    return dict(sorted(out.items()))


def gallery_size_curve(
    saved: SavedSearchResults, *, det_thresh: float | None = None, cbgm: CBGMParams | None = None
) -> list[GalleryCurvePoint]:
    """One point per ``gallery_<N>`` variant of ``saved.protocol``, by increasing N.

    Args:
        saved: a results file (its protocol: the variants it was evaluated on; give it the
            dataset's protocol to reach the others, ``tools/plot_gallery_curve.py --dataset``).
        det_thresh: ``None`` = the saving run's.
        cbgm: CBGM parameters or ``None`` (resolve the saving run's with
            :func:`~.saved_results.resolve_cbgm`).

    Raises:
        ValueError: the protocol has no ``gallery_<N>`` variant (PRW, or a file evaluated on
            other variants only).
    """
    sizes = gallery_sizes(saved.protocol.variant_loaders)
    if not sizes:
        raise ValueError(
            f"{saved.dataset_name}: the protocol has no gallery_<N> variant (variants: "
            f"{sorted(saved.protocol.variant_loaders)}); gallery sizes are CUHK-SYSU's"
        )
    thresh = float(saved.settings["det_thresh"]) if det_thresh is None else det_thresh
    results = evaluate_search(
        saved.protocol,
        saved.detections,
        saved.query_embeddings,
        det_thresh=thresh,
        variants=list(sizes.values()),
        cbgm=cbgm,
        contexts=saved.query_contexts,
    )
    points = []
    for size, name in sizes.items():
        summary = results[name].summary()
        points.append(
            GalleryCurvePoint(
                size, 100.0 * summary["mAP"], 100.0 * summary["top1"], summary["num_queries"]
            )
        )
    return points
