"""Self-contained person-search results files (``search_results.pth``).

A file holds every gallery detection (boxes, scores, embeddings; *all* scores, so it can be
re-evaluated at any detection threshold), every query embedding, each query's CBGM context when
the model produced one (:mod:`.cbgm`), the gallery ground truth (for the detection metrics) and
the protocol variants that were evaluated, serialised as arrays.
``tools/evaluate_saved.py`` re-runs the evaluation from it without the model or the dataset
files. Only tensors and plain Python types are stored, so it loads with
``torch.load(weights_only=True)``.

Layout (``torch.save`` of a dict)::

    format: "person_search.search_results", version: 3, dataset_name: str,
    settings: {det_thresh, cbgm_k1, cbgm_k2 (None when off)}   # what the saving run used
    protocol: {name, default_variant, gallery_image_ids, gallery_camera_ids,
               query_image_ids, query_boxes, query_person_ids, query_camera_ids,
               variants: {name: {query_indices, cross_camera,
                                 gallery_offsets, gallery_images (None for "all but query"),
                                 positive_offsets, positive_images, positive_boxes}}}
    ground_truth: {offsets, boxes, person_ids}
    detections: {offsets, boxes, scores, embeddings}
    query_embeddings: (Q, D) float32
    query_contexts: {offsets, boxes, scores, embeddings} (one "image" per query) or None
    detection_masks: {size, rows, bits} (a model with a mask branch, for drawing: the box masks
                     of the detections scoring >= det_thresh, :mod:`.detection_masks`); absent
                     otherwise
    occluded_queries: {grids (G, 2), coverages (C,), fill, seed, embeddings (Q, K, D),
                       covered (Q, K)} or None          # the occluded-query evaluation

Version 1 files (no ``query_contexts``) and version 2 files (no ``occluded_queries``) are read
too, without them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from person_search.data.search_protocol import QueryGalleries, SearchProtocol, SearchQuery
from person_search.utils.file_io import atomic_write

from .cbgm import CBGMParams
from .detection_masks import DetectionMasks
from .detection_metrics import GalleryGroundTruth
from .occluded_queries import OccludedQueryData
from .search_ranking import GalleryDetections

__all__ = [
    "RESULTS_FORMAT",
    "SavedSearchResults",
    "load_search_results",
    "resolve_cbgm",
    "save_search_results",
    "with_protocol",
]

RESULTS_FORMAT = "person_search.search_results"
RESULTS_VERSION = 3
# version 1: written before query contexts were saved; 2: before occluded queries were
_READABLE_VERSIONS = (1, 2, 3)


@dataclass
class SavedSearchResults:
    """The content of a results file, as evaluation inputs."""

    dataset_name: str
    protocol: SearchProtocol
    ground_truth: GalleryGroundTruth
    detections: GalleryDetections
    query_embeddings: np.ndarray
    settings: dict[str, Any]
    query_contexts: GalleryDetections | None = None
    detection_masks: DetectionMasks | None = None
    occluded_queries: OccludedQueryData | None = None


def _t(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def _csr(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[np.ndarray]]:
    offsets = np.r_[0, np.cumsum([len(a) for a in arrays], dtype=np.int64)]
    return _t(offsets, torch.int64), list(arrays)


def _variant_to_dict(v: QueryGalleries) -> dict[str, Any]:
    out: dict[str, Any] = {
        "query_indices": _t(np.asarray(v.query_indices), torch.int64),
        "cross_camera": bool(v.cross_camera),
        "gallery_offsets": None,
        "gallery_images": None,
    }
    if v.galleries is not None:
        offsets, parts = _csr([np.asarray(g, dtype=np.int64) for g in v.galleries])
        out["gallery_offsets"] = offsets
        out["gallery_images"] = _t(np.concatenate(parts or [np.zeros(0)]), torch.int32)
    images = [np.asarray(p[0], dtype=np.int64).ravel() for p in v.positives]
    boxes = [np.asarray(p[1], dtype=np.float64).reshape(-1, 4) for p in v.positives]
    offsets, _ = _csr(images)
    out["positive_offsets"] = offsets
    out["positive_images"] = _t(np.concatenate(images or [np.zeros(0)]), torch.int32)
    out["positive_boxes"] = _t(np.concatenate(boxes or [np.zeros((0, 4))]), torch.float64)
    return out


def _detections_to_dict(d: GalleryDetections) -> dict[str, torch.Tensor]:
    return {
        "offsets": _t(d.offsets, torch.int64),
        "boxes": _t(d.boxes, torch.float32),
        "scores": _t(d.scores, torch.float32),
        "embeddings": _t(d.embeddings, torch.float32),
    }


def _detections_from_dict(d: dict[str, torch.Tensor]) -> GalleryDetections:
    return GalleryDetections(
        d["offsets"].numpy(), d["boxes"].numpy(), d["scores"].numpy(), d["embeddings"].numpy()
    )


def _occluded_to_dict(data: OccludedQueryData | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {
        "grids": _t(np.asarray(data.grids, dtype=np.int64).reshape(-1, 2), torch.int64),
        "coverages": _t(np.asarray(data.coverages, dtype=np.float64), torch.float64),
        "fill": data.fill,
        "seed": int(data.seed),
        "embeddings": _t(data.embeddings, torch.float32),
        "covered": _t(data.covered, torch.float32),
    }


def _occluded_from_dict(d: dict[str, Any]) -> OccludedQueryData:
    return OccludedQueryData(
        grids=[tuple(g) for g in d["grids"].tolist()],
        coverages=d["coverages"].tolist(),
        fill=d["fill"],
        seed=int(d["seed"]),
        embeddings=d["embeddings"].numpy(),
        covered=d["covered"].numpy(),
    )


def _split(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _variant_from_dict(name: str, d: dict[str, Any]) -> QueryGalleries:
    galleries = None
    if d["gallery_offsets"] is not None:
        galleries = _split(d["gallery_images"].numpy().astype(np.int64), d["gallery_offsets"])
    pos_off = d["positive_offsets"].numpy()
    images = _split(d["positive_images"].numpy().astype(np.int64), pos_off)
    boxes = _split(d["positive_boxes"].numpy(), pos_off)
    return QueryGalleries(
        name=name,
        query_indices=d["query_indices"].numpy(),
        galleries=galleries,
        positives=list(zip(images, boxes)),
        cross_camera=bool(d["cross_camera"]),
    )


def save_search_results(
    path: str,
    *,
    dataset_name: str,
    protocol: SearchProtocol,
    variants: Sequence[QueryGalleries],
    ground_truth: GalleryGroundTruth,
    detections: GalleryDetections,
    query_embeddings: np.ndarray,
    settings: dict[str, Any],
    query_contexts: GalleryDetections | None = None,
    detection_masks: DetectionMasks | None = None,
    occluded_queries: OccludedQueryData | None = None,
) -> None:
    """Write a results file atomically (temporary file in the same folder, then rename).

    ``query_contexts``: each query's CBGM context in query order, when the model produced them;
    ``detection_masks``: box masks of ``detections`` (same rows), when it produced masks;
    ``occluded_queries``: the occluded-query evaluation's embeddings, when it ran.
    """
    queries = protocol.queries
    payload = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "dataset_name": dataset_name,
        "settings": dict(settings),
        "protocol": {
            "name": protocol.name,
            "default_variant": protocol.default_variant,
            "gallery_image_ids": list(protocol.gallery_image_ids),
            "gallery_camera_ids": _t(np.asarray(protocol.gallery_camera_ids), torch.int64),
            "query_image_ids": [q.image_id for q in queries],
            "query_boxes": _t(np.array([q.box for q in queries]).reshape(-1, 4), torch.float64),
            "query_person_ids": _t(np.array([q.person_id for q in queries]), torch.int64),
            "query_camera_ids": _t(np.array([q.camera_id for q in queries]), torch.int64),
            "variants": {v.name: _variant_to_dict(v) for v in variants},
        },
        "ground_truth": {
            "offsets": _t(ground_truth.offsets, torch.int64),
            "boxes": _t(ground_truth.boxes, torch.float64),
            "person_ids": _t(ground_truth.person_ids, torch.int64),
        },
        "detections": _detections_to_dict(detections),
        "query_embeddings": _t(np.asarray(query_embeddings), torch.float32),
        "query_contexts": None if query_contexts is None else _detections_to_dict(query_contexts),
        "occluded_queries": _occluded_to_dict(occluded_queries),
    }
    if detection_masks is not None:
        payload["detection_masks"] = {
            "size": int(detection_masks.size),
            "rows": _t(detection_masks.rows, torch.int64),
            "bits": _t(detection_masks.bits, torch.uint8),
        }
    atomic_write(path, lambda f: torch.save(payload, f), mode="wb")


def load_search_results(path: str) -> SavedSearchResults:
    """Read a file written by :func:`save_search_results`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a person-search results file (or holds more than tensors
            and plain types), or has an unknown version.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"person-search results file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path} is not a person-search results file (torch.load with weights_only=True "
            f"failed: {type(e).__name__}: {e})"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != RESULTS_FORMAT:
        raise ValueError(
            f"{path} is not a person-search results file (no format tag {RESULTS_FORMAT!r}; "
            "write one with PersonSearchEvaluator(output_dir=...))"
        )
    if payload.get("version") not in _READABLE_VERSIONS:
        raise ValueError(
            f"{path}: results file version {payload.get('version')!r} is not supported "
            f"(this code reads versions {', '.join(map(str, _READABLE_VERSIONS))})"
        )
    try:
        p = payload["protocol"]
        queries = [
            SearchQuery(image_id=i, box=b, person_id=int(pid), camera_id=int(cam))
            for i, b, pid, cam in zip(
                p["query_image_ids"],
                p["query_boxes"].numpy(),
                p["query_person_ids"].tolist(),
                p["query_camera_ids"].tolist(),
            )
        ]
        variants = {name: _variant_from_dict(name, d) for name, d in p["variants"].items()}
        protocol = SearchProtocol(
            name=p["name"],
            gallery_image_ids=list(p["gallery_image_ids"]),
            gallery_camera_ids=p["gallery_camera_ids"].numpy(),
            queries=queries,
            variant_loaders={name: (lambda v=v: v) for name, v in variants.items()},
            default_variant=p["default_variant"],
        )
        g, d = payload["ground_truth"], payload["detections"]
        ground_truth = GalleryGroundTruth(
            g["offsets"].numpy(), g["boxes"].numpy(), g["person_ids"].numpy()
        )
        contexts = payload.get("query_contexts")
        masks = payload.get("detection_masks")
        if masks is not None:
            masks = DetectionMasks(int(masks["size"]), masks["rows"].numpy(), masks["bits"].numpy())
            if len(masks.rows) != len(d["scores"]):
                raise ValueError(
                    f"{path}: {len(masks.rows)} mask rows for {len(d['scores'])} detections"
                )
        occluded = payload.get("occluded_queries")
        return SavedSearchResults(
            dataset_name=payload["dataset_name"],
            protocol=protocol,
            ground_truth=ground_truth,
            detections=_detections_from_dict(d),
            query_embeddings=payload["query_embeddings"].numpy(),
            settings=dict(payload["settings"]),
            query_contexts=None if contexts is None else _detections_from_dict(contexts),
            detection_masks=masks,
            occluded_queries=None if occluded is None else _occluded_from_dict(occluded),
        )
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: malformed person-search results file ({e!r})") from e


def with_protocol(
    saved: SavedSearchResults,
    protocol: SearchProtocol,
    ground_truth: GalleryGroundTruth,
    dataset_name: str,
    what: str = "the results file",
) -> SavedSearchResults:
    """``saved`` with another protocol and ground truth of the same test set (a registered
    dataset's, to evaluate variants the file was not evaluated on); ValueError when its gallery
    images or query count differ."""
    if list(protocol.gallery_image_ids) != list(saved.protocol.gallery_image_ids):
        raise ValueError(f"{what}: its gallery images differ from those of {dataset_name!r}")
    if len(protocol.queries) != len(saved.query_embeddings):
        raise ValueError(
            f"{what}: {len(saved.query_embeddings)} query embeddings, {dataset_name!r} has "
            f"{len(protocol.queries)} queries"
        )
    return dataclasses.replace(
        saved, dataset_name=dataset_name, protocol=protocol, ground_truth=ground_truth
    )


def resolve_cbgm(
    saved: SavedSearchResults,
    enabled: bool | None = None,
    k1: int | None = None,
    k2: int | None = None,
) -> CBGMParams | None:
    """The CBGM parameters to re-evaluate or draw a results file with.

    Args:
        enabled: CBGM on or off; ``None`` = as the run that saved the file.
        k1, k2: ``None`` = the saving run's values, else SeqNet's CUHK-SYSU values (10, 3).
    Raises:
        ValueError: CBGM is asked for but the file holds no query contexts, or ``k2`` exceeds
            the context rows the saving run kept per query.
    """
    saved_k1, saved_k2 = saved.settings.get("cbgm_k1"), saved.settings.get("cbgm_k2")
    if enabled is None:
        enabled = saved_k1 is not None
    if not enabled:
        return None
    default = CBGMParams()
    cbgm = CBGMParams(
        k1=int(k1 if k1 is not None else saved_k1 if saved_k1 is not None else default.k1),
        k2=int(k2 if k2 is not None else saved_k2 if saved_k2 is not None else default.k2),
    )
    if saved.query_contexts is None:
        raise ValueError(
            f"CBGM needs the query contexts, which this results file ({saved.dataset_name}) does "
            "not hold: evaluate the model again with TEST.PERSON_SEARCH.CBGM.ENABLED True, or "
            "re-evaluate without CBGM (--no-cbgm)"
        )
    rows = (
        int(saved_k2) if saved_k2 is not None else int(np.diff(saved.query_contexts.offsets).max())
    )
    if cbgm.k2 > rows:
        raise ValueError(
            f"k2={cbgm.k2} context nodes asked for, but the results file keeps {rows} per query "
            "(the model's TEST.PERSON_SEARCH.CBGM.K2 when it was evaluated)"
        )
    return cbgm
