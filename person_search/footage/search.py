"""Searching a footage index with a query box: the steps of ``tools/search.py``.

A query is a box in an image, embedded by the index's own model (rebuilt from the index's
``config.yaml`` and ``MODEL.WEIGHTS``; another model is an error naming both), or a detection
already in the index (``--query-index-entry``: its stored embedding, the entry itself left out
of the results). :func:`write_search_outputs` writes ``results.json``, ``contact_sheet.png`` and,
on request, ``frames/rank_<k>.png``, each atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from detectron2.data import detection_utils as utils

from person_search.engine import load_config
from person_search.utils.file_io import atomic_write, write_png

from .contact_sheet import draw_contact_sheet, draw_full_frame
from .index import FootageIndex, SearchHit
from .model import FootageModel

__all__ = [
    "FootageQuery",
    "check_query_box",
    "load_index_model",
    "query_from_entry",
    "query_from_image",
    "read_query_image",
    "write_search_outputs",
]

RESULTS_FILE = "results.json"
CONTACT_SHEET_FILE = "contact_sheet.png"
FULL_FRAMES_DIR = "frames"


@dataclass
class FootageQuery:
    """A query: its picture (RGB, for drawing), box, embedding and where it comes from.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        box: (4,) float64 XYXY in ``image`` pixels.
        embedding: (D,) float32 L2-normalised.
        description: JSON-able record of the query for ``results.json``.
        exclude: detection ids left out of the results (the query entry itself).
    """

    image: np.ndarray
    box: np.ndarray
    embedding: np.ndarray
    description: dict
    exclude: tuple[int, ...] = ()


def load_index_model(
    index: FootageIndex, opts: Sequence[str] = (), add_config: Callable | None = None
) -> FootageModel:
    """The model that built ``index``: its recorded config plus ``opts`` (e.g. ``MODEL.WEIGHTS``
    where the weights file now is, ``MODEL.DEVICE``), checked against the index's fingerprint.

    Args:
        add_config: a project's ``add_<name>_config`` when the model is a project's.

    Raises:
        ModelMismatchError: the weights or the model/input config differ from the index's.
    """
    cfg = load_config(index.config_file, list(opts), add_config)
    cfg.freeze()
    model = FootageModel.load(cfg)
    index.fingerprint.check_same(model.fingerprint, f"the index in {index.root}")
    return model


def check_query_box(box: Sequence[float], height: int, width: int, where: str) -> np.ndarray:
    """``box`` as (4,) float64 XYXY if it has a positive area inside a ``width`` x ``height``
    image; ValueError naming ``where`` otherwise."""
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)):
        raise ValueError(f"the query box must be 4 finite numbers X1 Y1 X2 Y2, got {list(box)}")
    x0, y0, x1, y1 = values
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"query box {values.tolist()} is not inside {where} ({width}x{height} pixels): it "
            "needs 0 <= X1 < X2 <= width and 0 <= Y1 < Y2 <= height"
        )
    return values


def read_query_image(image_path: str, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The query image as (H, W, 3) uint8 RGB and ``box`` checked against it
    (:func:`check_query_box`): call it before loading a model to fail fast on bad input."""
    if not os.path.isfile(image_path):
        raise FileNotFoundError(f"query image not found: {image_path}")
    try:
        image = utils.read_image(image_path, format="RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read the query image {image_path}: {e}") from e
    where = f"the query image {image_path}"
    return image, check_query_box(box, image.shape[0], image.shape[1], where)


def query_from_image(model: FootageModel, image_path: str, box: Sequence[float]) -> FootageQuery:
    """Embed ``box`` of the image file ``image_path`` with ``model`` (the image read as the
    test mapper reads it)."""
    image, checked = read_query_image(image_path, box)
    return FootageQuery(
        image=image,
        box=checked,
        embedding=model.embed_query(
            utils.read_image(image_path, format=model.image_format), checked
        ),
        description={"image": os.path.abspath(image_path), "box": checked.tolist()},
    )


def query_from_entry(index: FootageIndex, detection_id: int) -> FootageQuery:
    """The query of an indexed detection: its stored embedding and its frame."""
    hit = index.hit(detection_id)
    return FootageQuery(
        image=index.frame_image(hit.frame_id),
        box=np.asarray(hit.box, dtype=np.float64),
        embedding=index.embedding(detection_id),
        description={"index_entry": hit.to_json()},
        exclude=(detection_id,),
    )


def write_search_outputs(
    output: str,
    index: FootageIndex,
    query: FootageQuery,
    hits: Sequence[SearchHit],
    *,
    settings: dict,
    full_frames: bool = False,
    columns: int = 5,
) -> dict[str, str]:
    """Write ``results.json``, ``contact_sheet.png`` and optionally ``frames/rank_<k>.png``
    into ``output``; returns their paths by kind ("results", "contact_sheet", "frames")."""
    os.makedirs(output, exist_ok=True)
    images: dict[int, np.ndarray] = {}
    for hit in hits:
        if hit.frame_id not in images:
            images[hit.frame_id] = index.frame_image(hit.frame_id)
    sheet, _ = draw_contact_sheet(
        query.image, query.box, hits, [images[h.frame_id] for h in hits], columns=columns
    )
    paths = {"contact_sheet": os.path.join(output, CONTACT_SHEET_FILE)}
    write_png(paths["contact_sheet"], sheet)
    if full_frames:
        paths["frames"] = os.path.join(output, FULL_FRAMES_DIR)
        for hit in hits:
            path = os.path.join(paths["frames"], f"rank_{hit.rank:03d}.png")
            write_png(path, draw_full_frame(images[hit.frame_id], hit))
    report = {
        "index": index.root,
        "retrieval": index.info["retrieval"]["name"],
        "query": query.description,
        **settings,
        "results": [h.to_json() for h in hits],
    }
    paths["results"] = os.path.join(output, RESULTS_FILE)
    text = json.dumps(report, indent=1) + "\n"
    atomic_write(paths["results"], lambda f: f.write(text), mode="w")
    return paths
