"""Pictures of person-search results: a query and its top-k gallery matches, one image per query.

The ranking is the evaluation's own (:class:`~person_search.evaluation.search_ranking.
SearchRanker`, CBGM included when the saved evaluation used it): gallery detections with
``score >= det_thresh`` in the images the protocol variant searches for the query, ordered by
(CBGM re-scored) similarity to the query. A match is *correct* when it is the evaluation's true
positive in its image. Among exactly equal similarities negatives are drawn first, the metrics'
pessimistic rule, so the first panel is correct exactly when the evaluation counts a top-1 hit.

Drawing uses Detectron2's ``Visualizer``: the query box in blue, each match's box and a caption
("#rank sim 0.83 det 0.97") in green (correct) or red (wrong), and its instance mask in the same
colour when the results file holds the model's masks (a mask branch, ``MODEL.MASK_ON``:
:mod:`~person_search.evaluation.detection_masks`); every panel also gets a frame of that colour,
so correct and wrong matches differ even in a thumbnail. Panels are resized to one
height and laid out left to right: query, match #1, match #2, ...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.utils.visualizer import Visualizer

from person_search.data.search_protocol import QueryGalleries
from person_search.evaluation.cbgm import CBGMParams
from person_search.evaluation.detection_masks import DetectionMasks, paste_box_mask
from person_search.evaluation.saved_results import SavedSearchResults, resolve_cbgm
from person_search.evaluation.search_ranking import SearchRanker
from person_search.utils.file_io import write_png

__all__ = [
    "CORRECT_COLOR",
    "QUERY_COLOR",
    "WRONG_COLOR",
    "QueryVisualization",
    "SearchMatch",
    "dataset_image_paths",
    "draw_panel",
    "draw_query_matches",
    "hstack_panels",
    "image_root_paths",
    "rank_query",
    "read_rgb",
    "visualize_saved_results",
    "write_png",
]

# Box, caption and frame colours (RGB, 0-255).
QUERY_COLOR = (30, 90, 255)
CORRECT_COLOR = (0, 200, 0)
WRONG_COLOR = (230, 0, 0)
# Layout (pixels): panel height including the frame, frame thickness, gap between panels.
PANEL_HEIGHT = 320
FRAME = 6
GAP = 8
_GAP_VALUE = 255  # white gaps
# Opacity of a drawn instance mask.
MASK_ALPHA = 0.4


@dataclass(frozen=True)
class SearchMatch:
    """One gallery detection in a query's ranking.

    Attributes:
        rank: 1-based position in the ranking.
        gallery_index: index into ``protocol.gallery_image_ids``.
        image_id: gallery image id (file name).
        box: (4,) float32 XYXY in original image pixels.
        similarity: cosine similarity to the query embedding.
        score: detection score.
        correct: whether it is the evaluation's true positive in its image.
        mask: (S, S) bool instance mask of the box (``DetectionMasks``), or None.
    """

    rank: int
    gallery_index: int
    image_id: str
    box: np.ndarray
    similarity: float
    score: float
    correct: bool
    mask: np.ndarray | None = None


@dataclass
class QueryVisualization:
    """What :func:`visualize_saved_results` drew for one query.

    Attributes:
        query_index: index into ``protocol.queries``.
        path: the PNG written.
        matches: the ranked matches drawn (at most ``top_k``).
        panel_columns: per panel (query first), ``(x_start, x_end)`` columns in the PNG; every
            panel spans all rows, its frame is ``FRAME`` pixels thick.
    """

    query_index: int
    path: str
    matches: list[SearchMatch]
    panel_columns: list[tuple[int, int]]


def _ranker(saved: SavedSearchResults, det_thresh: float, cbgm: CBGMParams | None) -> SearchRanker:
    return SearchRanker(
        saved.protocol,
        saved.detections,
        saved.query_embeddings,
        det_thresh=det_thresh,
        cbgm=cbgm,
        contexts=saved.query_contexts,
    )


def _matches(
    ranker: SearchRanker,
    variant: QueryGalleries,
    query_index: int,
    top_k: int,
    masks: DetectionMasks | None = None,
) -> list[SearchMatch]:
    ranking = ranker.rank(variant, query_index)
    dets = ranker.dets
    return [
        SearchMatch(
            rank=r + 1,
            gallery_index=int(ranker.det_image[d]),
            image_id=ranker.protocol.gallery_image_ids[int(ranker.det_image[d])],
            box=dets.boxes[d].copy(),
            similarity=float(sim),
            score=float(dets.scores[d]),
            correct=bool(tp),
            mask=None if masks is None else masks.mask(int(d)),
        )
        for r, (d, sim, tp) in enumerate(
            zip(
                ranking.detections[:top_k],
                ranking.similarities[:top_k],
                ranking.true_positive[:top_k],
            )
        )
    ]


def rank_query(
    saved: SavedSearchResults,
    query_index: int,
    *,
    top_k: int,
    det_thresh: float,
    variant: QueryGalleries,
    cbgm: CBGMParams | None = None,
) -> list[SearchMatch]:
    """The ``top_k`` best-ranked gallery detections of one query, marked correct or wrong.

    Args:
        saved: a loaded results file (:func:`~person_search.evaluation.saved_results.
            load_search_results`).
        query_index: index into ``saved.protocol.queries``.
        top_k: number of matches returned (fewer when fewer detections are searched).
        det_thresh: detections with ``score >= det_thresh`` are searched.
        variant: the protocol variant whose gallery is searched (must evaluate this query).
        cbgm: rank with CBGM (needs the file's query contexts); ``None``: plain similarity.

    Returns:
        matches by decreasing similarity (ties: negatives first, then gallery order).
    """
    num_queries = len(saved.protocol.queries)
    if not 0 <= query_index < num_queries:
        raise ValueError(f"query index {query_index} is out of range [0, {num_queries})")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    return _matches(_ranker(saved, det_thresh, cbgm), variant, query_index, top_k)


def draw_panel(
    image_rgb: np.ndarray,
    box: np.ndarray,
    caption: str,
    color: tuple[int, int, int],
    height: int = PANEL_HEIGHT,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """One framed panel: ``image_rgb`` resized to ``height`` (frame included), the box, the
    box mask ``mask`` ((S, S) bool, optional) and the caption drawn by Detectron2's
    ``Visualizer``; (height, w, 3) uint8 RGB."""
    inner = height - 2 * FRAME
    scale = inner / image_rgb.shape[0]
    width = max(1, int(round(image_rgb.shape[1] * scale)))
    resized = cv2.resize(image_rgb, (width, inner), interpolation=cv2.INTER_AREA)
    color_f = tuple(c / 255.0 for c in color)
    vis = Visualizer(resized)
    x0, y0, x1, y1 = (np.asarray(box, dtype=np.float64) * scale).tolist()
    if mask is not None:
        pasted = paste_box_mask(mask, (x0, y0, x1, y1), inner, width)
        vis.draw_binary_mask(pasted, color=color_f, alpha=MASK_ALPHA)
    vis.draw_box((x0, y0, x1, y1), alpha=1.0, edge_color=color_f)
    vis.draw_text(caption, (2, 2), color=color_f, horizontal_alignment="left")
    drawn = vis.get_output().get_image()[:inner, :width]
    framed = np.empty((height, width + 2 * FRAME, 3), dtype=np.uint8)
    framed[:] = color
    framed[FRAME : FRAME + drawn.shape[0], FRAME : FRAME + drawn.shape[1]] = drawn
    return framed


def draw_query_matches(
    query_image: np.ndarray,
    query_box: np.ndarray,
    matches: Sequence[SearchMatch],
    match_images: Sequence[np.ndarray],
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Lay out the query panel and one panel per match.

    Args:
        query_image: (H, W, 3) uint8 RGB; query_box: (4,) XYXY in its pixels.
        matches: ranked matches; match_images: the (H_i, W_i, 3) uint8 RGB image of each.

    Returns:
        (PANEL_HEIGHT, W_total, 3) uint8 RGB picture and each panel's ``(x_start, x_end)``.
    """
    if len(matches) != len(match_images):
        raise ValueError(f"{len(matches)} matches but {len(match_images)} images")
    panels = [draw_panel(query_image, query_box, "query", QUERY_COLOR)]
    for match, image in zip(matches, match_images):
        verdict = "correct" if match.correct else "wrong"
        caption = f"#{match.rank} sim {match.similarity:.2f} det {match.score:.2f} {verdict}"
        color = CORRECT_COLOR if match.correct else WRONG_COLOR
        panels.append(draw_panel(image, match.box, caption, color, mask=match.mask))
    return hstack_panels(panels)


def hstack_panels(panels: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Panels of one height side by side, ``GAP`` white columns between them; the picture and
    each panel's ``(x_start, x_end)``."""
    columns, parts, x = [], [], 0
    for i, panel in enumerate(panels):
        if i:
            parts.append(np.full((panel.shape[0], GAP, 3), _GAP_VALUE, dtype=np.uint8))
            x += GAP
        columns.append((x, x + panel.shape[1]))
        parts.append(panel)
        x += panel.shape[1]
    return np.concatenate(parts, axis=1), columns


def dataset_image_paths(dataset_name: str) -> Callable[[str], str]:
    """image id -> file of a registered person-search dataset (its files must be present)."""
    try:
        dicts = DatasetCatalog.get(dataset_name)
    except KeyError as e:
        raise KeyError(f"dataset {dataset_name!r} is not registered ({e})") from e
    files = {d["image_id"]: d["file_name"] for d in dicts}

    def path(image_id: str) -> str:
        if image_id not in files:
            raise KeyError(f"image {image_id!r} is not in dataset {dataset_name!r}")
        return files[image_id]

    return path


def image_root_paths(image_root: str) -> Callable[[str], str]:
    """image id -> ``image_root/<image id>`` (e.g. CUHK-SYSU's ``Image/SSM``, PRW's ``frames``)."""
    if not os.path.isdir(image_root):
        raise NotADirectoryError(f"image root {image_root!r} is not a directory")
    return lambda image_id: os.path.join(image_root, image_id)


def read_rgb(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB image of ``path``; FileNotFoundError / ValueError naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        return utils.read_image(path, format="RGB")
    except (OSError, ValueError) as e:  # PIL: UnidentifiedImageError, truncated files
        raise ValueError(f"cannot read image {path}: {e}") from e


def visualize_saved_results(
    saved: SavedSearchResults,
    image_path: Callable[[str], str],
    output_dir: str,
    query_indices: Sequence[int],
    *,
    top_k: int = 5,
    det_thresh: float | None = None,
    variant: str | None = None,
    cbgm: bool | None = None,
    k1: int | None = None,
    k2: int | None = None,
    show_masks: bool = True,
) -> list[QueryVisualization]:
    """Write ``output_dir/query_<index>.png`` for each query (atomically).

    Args:
        saved: a loaded results file.
        image_path: image id -> image file (:func:`dataset_image_paths`,
            :func:`image_root_paths`).
        query_indices: indices into ``saved.protocol.queries``.
        top_k: matches per query.
        det_thresh: detection threshold; ``None`` = the one the results were evaluated with.
        variant: protocol variant searched; ``None`` = the protocol's default variant.
        cbgm, k1, k2: rank with CBGM or not; ``None`` = as the saved evaluation did
            (:func:`~person_search.evaluation.saved_results.resolve_cbgm`).
        show_masks: draw the matches' instance masks when the file holds them.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if det_thresh is None:
        det_thresh = float(saved.settings["det_thresh"])
    if not 0.0 <= det_thresh <= 1.0:
        raise ValueError(f"det_thresh must be in [0, 1], got {det_thresh}")
    protocol = saved.protocol
    built = protocol.variant(variant or protocol.default_variant)
    num_queries = len(protocol.queries)
    bad = [q for q in query_indices if not 0 <= q < num_queries]
    if bad:
        raise ValueError(f"query indices {bad} are out of range [0, {num_queries})")
    ranker = _ranker(saved, det_thresh, resolve_cbgm(saved, cbgm, k1, k2))
    masks = saved.detection_masks if show_masks else None
    os.makedirs(output_dir, exist_ok=True)
    out = []
    for q in query_indices:
        matches = _matches(ranker, built, q, top_k, masks)
        query = protocol.queries[q]
        picture, columns = draw_query_matches(
            read_rgb(image_path(query.image_id)),
            query.box,
            matches,
            [read_rgb(image_path(m.image_id)) for m in matches],
        )
        path = os.path.join(output_dir, f"query_{q:04d}.png")
        write_png(path, picture)
        out.append(QueryVisualization(q, path, matches, columns))
    return out
