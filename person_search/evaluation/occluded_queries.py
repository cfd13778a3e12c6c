"""Occluded-query robustness of a person-search model: how search degrades when the *query*
person is partly hidden (``TEST.PERSON_SEARCH.OCCLUDED_QUERIES``).

Each query is embedded again from copies of its image in which random grid cells of the query
box are covered by the compiled occlusion op (:class:`~person_search.data.occlusion.
QueryOcclusion`: K = grids x coverages settings, a fixed seed per query, never the whole box),
and searched in the *same* gallery detections as the unoccluded query, on the protocol's
default variant, without CBGM. Per setting: search mAP and top-1 (percent) and the mean
fraction of the box's pixels covered; as metrics, a table and a PNG curve (matplotlib).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from person_search.data.occlusion import QueryOcclusion
from person_search.data.search_protocol import SearchProtocol
from person_search.utils.file_io import atomic_write

from .search_metrics import evaluate_search
from .search_ranking import GalleryDetections

__all__ = [
    "CURVE_FILE",
    "OccludedQueryCurve",
    "OccludedQueryData",
    "evaluate_occluded_queries",
    "format_occluded_query_table",
    "plot_occluded_query_curves",
]

CURVE_FILE = "occluded_queries.png"  # written by the evaluator beside search_results.pth


@dataclass
class OccludedQueryData:
    """The occluded queries' embeddings of one evaluation and the settings that made them.

    Attributes:
        grids: G (rows, cols) grids; coverages: C cell probabilities; settings are grid-major
            (setting k = grid k // C, coverage k % C).
        fill, seed: the copies' fill mode and base seed (recorded, not used to evaluate).
        embeddings: (Q, K, D) float32, K = G x C, queries in protocol order.
        covered: (Q, K) float32, fraction of each query box's pixels covered.
    """

    grids: list[tuple[int, int]]
    coverages: list[float]
    fill: str
    seed: int
    embeddings: np.ndarray
    covered: np.ndarray

    def __post_init__(self) -> None:
        k = len(self.grids) * len(self.coverages)
        if self.embeddings.ndim != 3 or self.embeddings.shape[1] != k:
            raise ValueError(
                f"occluded-query embeddings must be (Q, {k}, D) for {len(self.grids)} grids x "
                f"{len(self.coverages)} coverages, got {tuple(self.embeddings.shape)}"
            )
        if self.covered.shape != self.embeddings.shape[:2]:
            raise ValueError(
                f"occluded-query coverage must be {self.embeddings.shape[:2]}, got "
                f"{self.covered.shape}"
            )

    @property
    def names(self) -> list[str]:
        """Setting names (``"2x1@0.50"``), grid-major."""
        return [QueryOcclusion.setting_name(g, c) for g in self.grids for c in self.coverages]


@dataclass
class OccludedQueryCurve:
    """Search results of unoccluded and occluded queries on one protocol variant (percent).

    Attributes:
        variant: the protocol variant; num_queries: queries in its means.
        grids, coverages: as :class:`OccludedQueryData`.
        clean_map, clean_top1: the unoccluded queries'.
        map, top1, covered: (G, C): per setting, mAP, top-1 and mean covered fraction of the
            query boxes (percent).
    """

    variant: str
    num_queries: int
    grids: list[tuple[int, int]]
    coverages: list[float]
    clean_map: float
    clean_top1: float
    map: np.ndarray
    top1: np.ndarray
    covered: np.ndarray

    def metrics(self) -> OrderedDict[str, float]:
        """Flat metrics: ``clean/mAP``, ``clean/top1``, then per setting ``<name>/mAP``,
        ``<name>/top1``, ``<name>/covered``."""
        out: OrderedDict[str, float] = OrderedDict()
        out["clean/mAP"], out["clean/top1"] = self.clean_map, self.clean_top1
        for gi, grid in enumerate(self.grids):
            for ci, coverage in enumerate(self.coverages):
                name = QueryOcclusion.setting_name(grid, coverage)
                out[f"{name}/mAP"] = float(self.map[gi, ci])
                out[f"{name}/top1"] = float(self.top1[gi, ci])
                out[f"{name}/covered"] = float(self.covered[gi, ci])
        return out


def evaluate_occluded_queries(
    protocol: SearchProtocol,
    detections: GalleryDetections,
    query_embeddings: np.ndarray,
    occluded: OccludedQueryData,
    *,
    det_thresh: float,
    variant: str | None = None,
) -> OccludedQueryCurve:
    """Search mAP / top-1 of the unoccluded and of every occluded version of the queries.

    Args:
        protocol, detections: as :func:`~.search_metrics.evaluate_search`.
        query_embeddings: (Q, D) the unoccluded queries'.
        occluded: the occluded queries' embeddings and coverage.
        det_thresh: detection score threshold.
        variant: protocol variant; None = the protocol's default.
    """
    variant = variant or protocol.default_variant
    if len(occluded.embeddings) != len(query_embeddings):
        raise ValueError(
            f"{len(occluded.embeddings)} occluded-query rows for {len(query_embeddings)} queries"
        )

    def search(embeddings: np.ndarray) -> tuple[float, float, int]:
        result = evaluate_search(
            protocol, detections, embeddings, det_thresh=det_thresh, variants=[variant]
        )[variant]
        summary = result.summary()
        return 100.0 * summary["mAP"], 100.0 * summary["top1"], int(summary["num_queries"])

    clean_map, clean_top1, num_queries = search(np.asarray(query_embeddings, np.float32))
    shape = (len(occluded.grids), len(occluded.coverages))
    maps, top1s = np.zeros(shape), np.zeros(shape)
    for k in range(shape[0] * shape[1]):
        maps.flat[k], top1s.flat[k], _ = search(occluded.embeddings[:, k])
    # Mean coverage over the queries the variant evaluates.
    rows = np.asarray(protocol.variant(variant).query_indices, dtype=np.int64)
    covered = 100.0 * occluded.covered[rows].mean(axis=0).reshape(shape)
    return OccludedQueryCurve(
        variant=variant,
        num_queries=num_queries,
        grids=[tuple(g) for g in occluded.grids],
        coverages=list(occluded.coverages),
        clean_map=clean_map,
        clean_top1=clean_top1,
        map=maps,
        top1=top1s,
        covered=covered,
    )


def format_occluded_query_table(curve: OccludedQueryCurve, dataset_name: str) -> str:
    """A markdown table: one row for the unoccluded queries, one per setting."""
    from tabulate import tabulate

    rows = [["unoccluded", "-", "-", 0.0, curve.clean_map, curve.clean_top1]]
    for gi, grid in enumerate(curve.grids):
        for ci, coverage in enumerate(curve.coverages):
            rows.append(
                [
                    f"{grid[0]}x{grid[1]}",
                    f"{coverage:.2f}",
                    f"{curve.map[gi, ci] - curve.clean_map:+.2f}",
                    curve.covered[gi, ci],
                    curve.map[gi, ci],
                    curve.top1[gi, ci],
                ]
            )
    table = tabulate(
        rows,
        headers=["grid", "cell prob.", "mAP change", "box covered %", "mAP", "top-1"],
        floatfmt=".2f",
        tablefmt="pipe",
    )
    return (
        f"Occluded queries on {dataset_name} ({curve.variant}, {curve.num_queries} queries, "
        f"no CBGM)\n{table}"
    )


def plot_occluded_query_curves(
    curves: Mapping[str, OccludedQueryCurve] | Sequence[tuple[str, OccludedQueryCurve]],
    path: str,
    *,
    title: str = "Search with occluded queries",
    spreads: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> None:
    """Draw mAP and top-1 against the covered fraction of the query box, one line per model
    and grid (the unoccluded queries at 0 %), into a PNG written atomically.

    Args:
        curves: label -> curve (e.g. one per model, or per seed-averaged model).
        spreads: optional label -> ((G, C) mAP std, (G, C) top-1 std) drawn as error bars.
    """
    from matplotlib.figure import Figure

    items = list(curves.items()) if isinstance(curves, Mapping) else list(curves)
    if not items:
        raise ValueError("plot_occluded_query_curves: no curve given")
    fig = Figure(figsize=(10, 4), dpi=100)
    axes = fig.subplots(1, 2)
    colours = [f"C{i}" for i in range(10)]
    markers = "osD^v<>"
    for mi, (label, curve) in enumerate(items):
        spread = (spreads or {}).get(label)
        for gi, grid in enumerate(curve.grids):
            x = np.r_[0.0, curve.covered[gi]]
            for ai, (values, clean) in enumerate(
                ((curve.map, curve.clean_map), (curve.top1, curve.clean_top1))
            ):
                y = np.r_[clean, values[gi]]
                err = None if spread is None else np.r_[0.0, spread[ai][gi]]
                axes[ai].errorbar(
                    x,
                    y,
                    yerr=err,
                    color=colours[mi % len(colours)],
                    marker=markers[gi % len(markers)],
                    linestyle="-" if gi == 0 else "--",
                    capsize=3 if err is not None else 0,
                    label=f"{label}, grid {grid[0]}x{grid[1]}",
                )
    for ax, name in zip(axes, ("search mAP (%)", "search top-1 (%)")):
        ax.set_xlabel("query box covered (%)")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    first = items[0][1]
    fig.suptitle(f"{title} ({first.variant}, {first.num_queries} queries)")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"), mode="wb")
