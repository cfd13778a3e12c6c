"""Re-id evaluator: CMC / mAP / mINP of a model's features on a query + gallery test set."""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from detectron2.config import configurable
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .reid_metrics import evaluate_reid, feature_distance, part_distance
from .rerank import k_reciprocal_rerank

__all__ = ["ReIDEvaluator"]

_FEATURE_MODES = ("global", "parts", "global+parts")
_PART_DISTANCES = ("mean", "sum")
_REPORTED_RANKS = (1, 5, 10)


class ReIDEvaluator(DatasetEvaluator):
    """Evaluate re-id features on a test set whose inputs carry ``"split"`` (query / gallery),
    ``"person_id"`` and ``"camera_id"`` (as produced by :class:`ReIDDatasetMapper`).

    Model outputs, one dict per input: ``{"features": (D,)}`` and/or ``{"part_features": (P, d),
    "part_visibility": (P,)}``. The distance is chosen by ``feature``:

    * "global": ``metric`` distance of ``features``;
    * "parts": over the parts visible (score > ``part_threshold``) in both images, the sum of the
      part distances divided by the number of shared visible parts (``part_distance="mean"``), or
      the plain sum (``"sum"``, SGSFA eq. 7); no shared part -> +inf;
    * "global+parts": the sum of the two.

    Optionally k-reciprocal re-ranking (:func:`k_reciprocal_rerank`) of the chosen distance.
    Results ``{"reid": {"Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "num_valid_queries",
    "num_skipped_queries"}}``, metrics in percent (ranks above ``max_rank`` are not reported).
    Queries without a true match in the gallery (after removing same-id same-camera entries and
    junk) are left out of the means, counted in ``num_skipped_queries`` and logged.
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        *,
        metric: str = "cosine",
        feature: str = "global",
        part_threshold: float = 0.5,
        part_distance: str = "mean",
        max_rank: int = 10,
        rerank: bool = False,
        rerank_k1: int = 20,
        rerank_k2: int = 6,
        rerank_lambda: float = 0.3,
        distributed: bool = True,
    ):
        if feature not in _FEATURE_MODES:
            raise ValueError(f"TEST.REID.FEATURE must be one of {_FEATURE_MODES}, got {feature!r}")
        if part_distance not in _PART_DISTANCES:
            raise ValueError(
                f"TEST.REID.PART_DISTANCE must be one of {_PART_DISTANCES}, got {part_distance!r}"
            )
        feature_distance(torch.zeros(1, 1), torch.zeros(1, 1), metric)  # validates the metric
        self.dataset_name = dataset_name
        self.metric = metric
        self.feature = feature
        self.part_threshold = part_threshold
        self.part_normalize = part_distance == "mean"
        self.max_rank = max_rank
        self.rerank = rerank
        self.rerank_args = {"k1": rerank_k1, "k2": rerank_k2, "lambda_value": rerank_lambda}
        self.distributed = distributed
        self._logger = logging.getLogger(__name__)
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str, *, distributed: bool = True) -> dict:
        r = cfg.TEST.REID
        return {
            "dataset_name": dataset_name,
            "metric": r.METRIC,
            "feature": r.FEATURE,
            "part_threshold": r.PART_VISIBILITY_THRESHOLD,
            "part_distance": r.PART_DISTANCE,
            "max_rank": r.MAX_RANK,
            "rerank": r.RERANK.ENABLED,
            "rerank_k1": r.RERANK.K1,
            "rerank_k2": r.RERANK.K2,
            "rerank_lambda": r.RERANK.LAMBDA,
            "distributed": distributed,
        }

    def reset(self) -> None:
        self._records: list[dict] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            split = inp.get("split")
            if split not in ("query", "gallery"):
                raise ValueError(
                    f"{self.dataset_name}: input {inp.get('image_id')!r} has split {split!r}; "
                    "ReIDEvaluator needs 'query' or 'gallery'"
                )
            rec = {"split": split, "pid": int(inp["person_id"]), "camid": int(inp["camera_id"])}
            if self.feature != "parts":
                rec["features"] = self._get(out, "features", inp).reshape(-1)
            if self.feature != "global":
                rec["part_features"] = self._get(out, "part_features", inp)
                rec["part_visibility"] = self._get(out, "part_visibility", inp).reshape(-1)
            self._records.append(rec)

    def _get(self, out: dict, key: str, inp: dict) -> torch.Tensor:
        if key not in out:
            raise KeyError(
                f"model output for {inp.get('image_id')!r} has no {key!r} "
                f"(TEST.REID.FEATURE = {self.feature!r}); it has {sorted(out)}"
            )
        return out[key].detach().to("cpu", torch.float32)

    def _distance(self, a: list[dict], b: list[dict]) -> torch.Tensor:
        dist = torch.zeros(len(a), len(b))
        if self.feature != "parts":
            fa = torch.stack([r["features"] for r in a])
            fb = torch.stack([r["features"] for r in b])
            dist += feature_distance(fa, fb, self.metric)
        if self.feature != "global":
            dist += part_distance(
                torch.stack([r["part_features"] for r in a]),
                torch.stack([r["part_visibility"] for r in a]),
                torch.stack([r["part_features"] for r in b]),
                torch.stack([r["part_visibility"] for r in b]),
                metric=self.metric,
                threshold=self.part_threshold,
                normalize=self.part_normalize,
            )
        return dist

    def evaluate(self) -> OrderedDict:
        records = self._records
        if self.distributed:
            comm.synchronize()
            gathered = comm.gather(records, dst=0)
            if not comm.is_main_process():
                return OrderedDict()
            records = [r for part in gathered for r in part]
        query = [r for r in records if r["split"] == "query"]
        gallery = [r for r in records if r["split"] == "gallery"]
        if not query or not gallery:
            raise ValueError(
                f"{self.dataset_name}: need query and gallery images, got {len(query)} queries "
                f"and {len(gallery)} gallery images"
            )
        dist = self._distance(query, gallery)
        if self.rerank:
            dist = k_reciprocal_rerank(
                dist,
                self._distance(query, query),
                self._distance(gallery, gallery),
                **self.rerank_args,
            )
        res = evaluate_reid(
            dist,
            [r["pid"] for r in query],
            [r["pid"] for r in gallery],
            [r["camid"] for r in query],
            [r["camid"] for r in gallery],
            max_rank=self.max_rank,
        )
        if res["num_skipped_queries"]:
            self._logger.warning(
                "%s: %d of %d queries have no valid gallery match and were skipped",
                self.dataset_name,
                res["num_skipped_queries"],
                len(query),
            )
        metrics = {
            f"Rank-{k}": 100.0 * float(res["cmc"][k - 1])
            for k in _REPORTED_RANKS
            if k <= self.max_rank
        }
        metrics["mAP"] = 100.0 * res["mAP"]
        metrics["mINP"] = 100.0 * res["mINP"]
        metrics["num_valid_queries"] = res["num_valid_queries"]
        metrics["num_skipped_queries"] = res["num_skipped_queries"]
        return OrderedDict({"reid": metrics})
