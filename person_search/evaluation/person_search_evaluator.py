"""Detectron2 evaluator for person search (CUHK-SYSU, PRW): detection and search metrics.

One ``inference_on_dataset`` pass over a person-search test dataset feeds
:class:`PersonSearchEvaluator` with gallery scene images (outputs ``instances`` with
``pred_boxes``, ``scores``, ``embeddings``; with a mask branch also ``pred_masks``, whose box
masks it keeps for drawing, :mod:`.detection_masks`) and queries (outputs ``query_embeddings``
and, when the model runs with CBGM on, ``query_context``: the query image's detections with the
query box forced in, :mod:`.cbgm`). It stores *every* detection and applies ``det_thresh`` only
when computing metrics, so a saved results file can be re-evaluated at other thresholds
(``tools/evaluate_saved.py``). The protocol comes from ``get_search_protocol(dataset_name)``
(read once per process); the detection ground truth from the dataset dicts. Metric rules:
:mod:`.search_metrics` and :mod:`.detection_metrics`.

Metrics are in percent (Detectron2's convention)::

    {"search": {"mAP", "top1", "top5", "top10"                  # the protocol's default variant
                "<variant>/mAP", "<variant>/top1", ...},          # every evaluated variant
     "detection": {"AP", "recall", "labelled_AP", "labelled_recall"},
     "occluded_query": {"clean/mAP", "clean/top1",                # with OCCLUDED_QUERIES on
                        "<grid>@<coverage>/mAP", ".../top1", ".../covered"}}

With ``TEST.PERSON_SEARCH.OCCLUDED_QUERIES`` on, the queries' inputs carry occluded copies of
their image and the model's outputs their embeddings (``occluded_query_embeddings``): the
evaluator also reports search on each occluded version (:mod:`.occluded_queries`), as a table,
``occluded_queries.png`` in ``output_dir`` and in the results file.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from detectron2.config import CfgNode, configurable
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tabulate import tabulate

from person_search.data.datasets import get_search_protocol
from person_search.data.occlusion import QueryOcclusion
from person_search.data.search_protocol import QueryGalleries, SearchProtocol

from .cbgm import CBGMParams
from .detection_masks import DetectionMasks, box_masks
from .detection_metrics import GalleryGroundTruth, evaluate_detection
from .occluded_queries import (
    CURVE_FILE,
    OccludedQueryData,
    evaluate_occluded_queries,
    format_occluded_query_table,
    plot_occluded_query_curves,
)
from .saved_results import save_search_results
from .search_metrics import TOPK, VariantResult, evaluate_search, summarize_search
from .search_ranking import GalleryDetections

__all__ = [
    "PersonSearchEvaluator",
    "compute_person_search_metrics",
    "format_results_table",
    "load_protocol_and_ground_truth",
]

logger = logging.getLogger(__name__)

RESULTS_FILE = "search_results.pth"  # written in output_dir when saving is on


def compute_person_search_metrics(
    protocol: SearchProtocol,
    ground_truth: GalleryGroundTruth,
    detections: GalleryDetections,
    query_embeddings: np.ndarray,
    *,
    det_thresh: float,
    variants: Sequence[QueryGalleries],
    cbgm: CBGMParams | None = None,
    contexts: GalleryDetections | None = None,
) -> tuple[OrderedDict[str, OrderedDict[str, float]], OrderedDict[str, VariantResult]]:
    """Detection and search metrics (percent) and the per-query search results.

    Args:
        protocol, ground_truth, detections: in the protocol's gallery order.
        query_embeddings: (len(protocol.queries), D).
        det_thresh: detection score threshold (``>=``) for both metric families.
        variants: the protocol variants to evaluate.
        cbgm: CBGM parameters, ``None`` to disable.
        contexts: with ``cbgm``, each query's context in query order.
    """
    per_variant = evaluate_search(
        protocol,
        detections,
        query_embeddings,
        det_thresh=det_thresh,
        variants=variants,
        cbgm=cbgm,
        contexts=contexts,
    )
    det_all = evaluate_detection(ground_truth, detections, det_thresh=det_thresh)
    det_lab = evaluate_detection(
        ground_truth, detections, det_thresh=det_thresh, labelled_only=True
    )
    results: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()
    results["search"] = summarize_search(per_variant, protocol.default_variant)
    results["detection"] = OrderedDict(
        AP=100.0 * det_all.ap,
        recall=100.0 * det_all.recall,
        labelled_AP=100.0 * det_lab.ap,
        labelled_recall=100.0 * det_lab.recall,
    )
    return results, per_variant


def format_results_table(
    results: OrderedDict[str, OrderedDict[str, float]],
    per_variant: OrderedDict[str, VariantResult],
    *,
    dataset_name: str,
    det_thresh: float,
    cbgm: CBGMParams | None,
) -> str:
    """A human-readable table of the metrics, naming the detection threshold and CBGM."""
    cbgm_txt = "off" if cbgm is None else f"as published by SeqNet, k1={cbgm.k1}, k2={cbgm.k2}"
    head = f"Person search on {dataset_name} (det_thresh={det_thresh:g}, CBGM {cbgm_txt})"
    rows = []
    for name, res in per_variant.items():
        s = res.summary()
        rows.append(
            [name, 100 * s["mAP"], *(100 * s[f"top{k}"] for k in TOPK), s["num_queries"]]
            + [s["num_skipped"]]
        )
    search = tabulate(
        rows,
        headers=["variant", "mAP", *(f"top-{k}" for k in TOPK), "queries", "skipped"],
        floatfmt=".2f",
        tablefmt="pipe",
    )
    det = tabulate(
        [list(results["detection"].values())],
        headers=list(results["detection"].keys()),
        floatfmt=".2f",
        tablefmt="pipe",
    )
    return f"{head}\n{search}\nDetection (gallery images, IoU 0.5):\n{det}"


def load_protocol_and_ground_truth(
    dataset_name: str,
) -> tuple[SearchProtocol, GalleryGroundTruth]:
    """The search protocol and gallery ground truth of a registered person-search test set
    (both from the dataset's load, cached per process)."""
    protocol = get_search_protocol(dataset_name)
    dicts = DatasetCatalog.get(dataset_name)
    return protocol, GalleryGroundTruth.from_dataset_dicts(dicts, protocol.gallery_image_ids)


class PersonSearchEvaluator(DatasetEvaluator):
    """Evaluates person search on a test dataset registered with a ``search_protocol``."""

    @configurable
    def __init__(
        self,
        dataset_name: str,
        *,
        det_thresh: float = 0.5,
        output_dir: str | None = None,
        variants: Sequence[str] | None = None,
        cbgm: CBGMParams | None = None,
        save_results: bool = True,
        distributed: bool = True,
        occluded_queries: QueryOcclusion | None = None,
    ) -> None:
        """
        Args:
            dataset_name: a registered person-search test dataset.
            det_thresh: detections with ``score >= det_thresh`` are evaluated.
            output_dir: where ``search_results.pth`` is written (when ``save_results``).
            variants: protocol variants to evaluate; ``None`` or empty = all of the protocol.
            cbgm: enable context bipartite graph matching with these parameters.
            save_results: write the results file when ``output_dir`` is set.
            distributed: gather the outputs of all workers, evaluate on the main process.
            occluded_queries: the settings of the occluded-query evaluation (the test mapper's
                copies), None = off.
        """
        if not 0.0 <= det_thresh <= 1.0:
            raise ValueError(f"det_thresh must be in [0, 1], got {det_thresh}")
        self._dataset_name = dataset_name
        self._det_thresh = float(det_thresh)
        self._output_dir = output_dir
        self._variants = list(variants) if variants else None
        self._cbgm = cbgm
        self._save = save_results
        self._distributed = distributed
        self._occlusion = occluded_queries
        self.reset()

    @classmethod
    def from_config(
        cls, cfg: CfgNode, dataset_name: str, output_dir: str | None = None
    ) -> dict[str, Any]:
        ps = cfg.TEST.PERSON_SEARCH
        cbgm = CBGMParams(k1=ps.CBGM.K1, k2=ps.CBGM.K2) if ps.CBGM.ENABLED else None
        return {
            "dataset_name": dataset_name,
            "det_thresh": ps.DET_THRESH,
            "output_dir": output_dir,
            "variants": list(ps.VARIANTS),
            "cbgm": cbgm,
            "save_results": ps.SAVE_RESULTS,
            "occluded_queries": (
                QueryOcclusion.from_config(cfg) if ps.OCCLUDED_QUERIES.ENABLED else None
            ),
        }

    def reset(self) -> None:
        self._gallery: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._queries: dict[int, np.ndarray] = {}
        self._contexts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._masks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._occluded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        """Store each query embedding and context (by ``query_index``) and every gallery
        detection; with ``pred_masks``, the box masks of those scoring ``>= det_thresh``
        (:mod:`.detection_masks`, for drawing)."""
        for inp, out in zip(inputs, outputs):
            if "query_index" in inp:
                if "query_embeddings" not in out:
                    raise KeyError(
                        f"query {inp['query_index']} ({inp.get('image_id')}): model output has "
                        "no 'query_embeddings'"
                    )
                emb = out["query_embeddings"].detach().to("cpu", dtype=torch.float32)
                self._queries[int(inp["query_index"])] = emb.reshape(-1).numpy()
                if self._cbgm is not None and "query_context" not in out:
                    raise KeyError(
                        f"query {inp['query_index']} ({inp.get('image_id')}): CBGM is on but the "
                        "model output has no 'query_context' (PersonSearchRCNN returns it when "
                        "built with TEST.PERSON_SEARCH.CBGM.ENABLED True)"
                    )
                if "query_context" in out:
                    what = f"query {inp['query_index']} ({inp.get('image_id')}): query_context"
                    self._contexts[int(inp["query_index"])] = _detection_arrays(
                        out["query_context"], what
                    )
                if self._occlusion is not None:
                    self._occluded[int(inp["query_index"])] = self._occluded_arrays(inp, out)
                continue
            if "instances" not in out:
                raise KeyError(
                    f"gallery image {inp.get('image_id')}: model output has no 'instances'"
                )
            what = f"gallery image {inp.get('image_id')}: instances"
            self._gallery[inp["image_id"]] = _detection_arrays(out["instances"], what)
            if out["instances"].has("pred_masks"):
                self._masks[inp["image_id"]] = _kept_masks(out["instances"], self._det_thresh)

    def _gathered(self) -> tuple[dict, dict, dict, dict, dict] | None:
        parts = (self._gallery, self._queries, self._contexts, self._masks, self._occluded)
        if not self._distributed or comm.get_world_size() == 1:
            return parts
        comm.synchronize()
        gathered = [comm.gather(part, dst=0) for part in parts]
        if not comm.is_main_process():
            return None
        return tuple(
            dict(itertools.chain.from_iterable(p.items() for p in per_worker))
            for per_worker in gathered
        )

    def evaluate(self) -> OrderedDict[str, OrderedDict[str, float]] | dict:
        gathered = self._gathered()
        if gathered is None:
            return {}
        gallery, queries, contexts, masks, occluded = gathered
        protocol, ground_truth = load_protocol_and_ground_truth(self._dataset_name)
        detections = self._detections(protocol, gallery, queries)
        detection_masks = self._detection_masks(protocol, masks)
        query_embeddings = self._query_embeddings(protocol, queries)
        query_contexts = self._query_contexts(protocol, contexts, query_embeddings.shape[1])
        names = self._variants or list(protocol.variant_loaders)
        variants = [protocol.variant(n) for n in names]
        results, per_variant = compute_person_search_metrics(
            protocol,
            ground_truth,
            detections,
            query_embeddings,
            det_thresh=self._det_thresh,
            variants=variants,
            cbgm=self._cbgm,
            contexts=query_contexts,
        )
        logger.info(
            "\n"
            + format_results_table(
                results,
                per_variant,
                dataset_name=self._dataset_name,
                det_thresh=self._det_thresh,
                cbgm=self._cbgm,
            )
        )
        occluded_data = None
        if self._occlusion is not None:
            occluded_data = self._occluded_data(protocol, occluded)
            curve = evaluate_occluded_queries(
                protocol,
                detections,
                query_embeddings,
                occluded_data,
                det_thresh=self._det_thresh,
            )
            results["occluded_query"] = curve.metrics()
            logger.info("\n" + format_occluded_query_table(curve, self._dataset_name))
            if self._output_dir:
                path = os.path.join(self._output_dir, CURVE_FILE)
                plot_occluded_query_curves({self._dataset_name: curve}, path)
                logger.info(f"Saved the occluded-query curve to {path}")
        if self._output_dir and self._save:
            path = os.path.join(self._output_dir, RESULTS_FILE)
            save_search_results(
                path,
                dataset_name=self._dataset_name,
                protocol=protocol,
                variants=variants,
                ground_truth=ground_truth,
                detections=detections,
                query_embeddings=query_embeddings,
                settings={
                    "det_thresh": self._det_thresh,
                    "cbgm_k1": None if self._cbgm is None else self._cbgm.k1,
                    "cbgm_k2": None if self._cbgm is None else self._cbgm.k2,
                },
                query_contexts=query_contexts,
                detection_masks=detection_masks,
                occluded_queries=occluded_data,
            )
            logger.info(f"Saved person-search results to {path}")
        return copy.deepcopy(results)

    def _detections(
        self, protocol: SearchProtocol, gallery: dict, queries: dict
    ) -> GalleryDetections:
        missing = [i for i in protocol.gallery_image_ids if i not in gallery]
        if missing:
            raise ValueError(
                f"{self._dataset_name}: no model output for {len(missing)} of "
                f"{len(protocol.gallery_image_ids)} gallery images (e.g. {missing[:3]})"
            )
        dims = {e.shape[1] for _, _, e in gallery.values() if e.ndim == 2 and len(e)}
        dims |= {len(e) for e in queries.values()}
        if len(dims) != 1:
            raise ValueError(f"{self._dataset_name}: inconsistent embedding sizes {sorted(dims)}")
        return GalleryDetections.from_per_image(
            [gallery[i] for i in protocol.gallery_image_ids], embedding_dim=dims.pop()
        )

    def _detection_masks(self, protocol: SearchProtocol, masks: dict) -> DetectionMasks | None:
        """The gallery detections' box masks in protocol order; None when the model made
        none."""
        if not masks:
            return None
        missing = [i for i in protocol.gallery_image_ids if i not in masks]
        if missing:
            raise ValueError(
                f"{self._dataset_name}: pred_masks for some gallery images only (none for "
                f"{len(missing)}, e.g. {missing[:3]})"
            )
        return DetectionMasks.from_per_image([masks[i] for i in protocol.gallery_image_ids])

    def _in_query_order(self, protocol: SearchProtocol, per_query: dict, what: str) -> list:
        """``per_query[q]`` for every query index q; ``ValueError`` naming the missing ones."""
        n = len(protocol.queries)
        missing = [q for q in range(n) if q not in per_query]
        if missing:
            raise ValueError(
                f"{self._dataset_name}: no {what} for {len(missing)} of {n} queries "
                f"(e.g. query_index {missing[:3]})"
            )
        return [per_query[q] for q in range(n)]

    def _query_embeddings(self, protocol: SearchProtocol, queries: dict) -> np.ndarray:
        embeddings = self._in_query_order(protocol, queries, "query embedding")
        return np.stack(embeddings).astype(np.float32)

    def _occluded_arrays(self, inp: dict, out: dict) -> tuple[np.ndarray, np.ndarray]:
        """(K, D) occluded-query embeddings and (K,) covered fractions of one query."""
        what = f"query {inp['query_index']} ({inp.get('image_id')})"
        k = len(self._occlusion.settings)
        if "occluded_query_coverage" not in inp:
            raise KeyError(
                f"{what}: TEST.PERSON_SEARCH.OCCLUDED_QUERIES is on but the input has no "
                "'occluded_query_coverage' (the test mapper makes the copies: "
                "PersonSearchDatasetMapper built with the same config)"
            )
        if "occluded_query_embeddings" not in out:
            raise KeyError(
                f"{what}: TEST.PERSON_SEARCH.OCCLUDED_QUERIES is on but the model output has no "
                "'occluded_query_embeddings' (PersonSearchRCNN returns them for inputs with "
                "'occluded_query_images')"
            )
        emb = out["occluded_query_embeddings"].detach().to("cpu", dtype=torch.float32).numpy()
        covered = inp["occluded_query_coverage"].detach().to("cpu", torch.float32).numpy()
        if emb.ndim != 2 or len(emb) != k or covered.shape != (k,):
            raise ValueError(
                f"{what}: expected {k} occluded versions (TEST.PERSON_SEARCH.OCCLUDED_QUERIES), "
                f"got embeddings {emb.shape} and coverage {covered.shape}"
            )
        return emb, covered

    def _occluded_data(self, protocol: SearchProtocol, occluded: dict) -> OccludedQueryData:
        per_query = self._in_query_order(protocol, occluded, "occluded-query embeddings")
        return OccludedQueryData(
            grids=list(self._occlusion.grids),
            coverages=list(self._occlusion.coverages),
            fill=self._occlusion.fill,
            seed=self._occlusion.seed,
            embeddings=np.stack([e for e, _ in per_query]),
            covered=np.stack([c for _, c in per_query]),
        )

    def _query_contexts(
        self, protocol: SearchProtocol, contexts: dict, dim: int
    ) -> GalleryDetections | None:
        """The queries' contexts in query order; ``None`` when the model produced none."""
        if not contexts:
            return None
        per_query = self._in_query_order(protocol, contexts, "query_context")
        return GalleryDetections.from_per_image(per_query, dim)


def _detection_arrays(instances: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (n, 4), scores (n,), embeddings (n, D)) float32 arrays of model output instances."""
    inst = instances.to("cpu")
    for field in ("pred_boxes", "scores", "embeddings"):
        if not inst.has(field):
            raise KeyError(f"{what} lack {field!r}")
    return (
        inst.pred_boxes.tensor.detach().float().numpy(),
        inst.scores.detach().float().numpy(),
        inst.embeddings.detach().float().numpy(),
    )


def _kept_masks(instances: Any, det_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """(kept (n,) bool: ``score >= det_thresh``, their (k, MASK_SIZE, MASK_SIZE) bool box
    masks) of output instances with (n, H, W) ``pred_masks``."""
    inst = instances.to("cpu")
    kept = inst.scores.detach().float() >= det_thresh
    masks = inst.pred_masks.detach()[kept]
    if masks.ndim != 3:
        raise ValueError(f"pred_masks must be (n, H, W) image masks, got {tuple(masks.shape)}")
    return kept.numpy(), box_masks(masks, inst.pred_boxes.tensor.detach()[kept])
