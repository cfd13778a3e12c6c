"""The library's extension points, used from outside the library as a paper project would:
everything below is registered by this module, nothing of the library is copied or edited.

* person search: a RoI head overriding only the feature-transform step, a re-id loss (margin on
  the OIM logits, through the loss' public ``logits()``), a person-search mapper and a trainer
  overriding ``build_train_loader(cls, cfg)``; 3 training iterations on the toy set, then the
  evaluator;
* the same with ``MODEL.MASK_ON`` on images where only some persons have masks: the mask loss
  is present and finite, and only persons with masks reach it;
* re-id: a re-id mapper (``REID_MAPPER_REGISTRY``) and a trainer overriding
  ``build_train_loader(cls, cfg)``.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import ROI_HEADS_REGISTRY

import person_search.data
from person_search.data import (
    MAPPER_REGISTRY,
    PersonSearchDatasetMapper,
    build_person_search_train_loader,
    build_reid_train_loader,
)
from person_search.engine import PersonSearchTrainer, ReIDTrainer, load_config
from person_search.evaluation.person_search_evaluator import RESULTS_FILE
from person_search.evaluation.saved_results import load_search_results
from person_search.modeling.losses import BACKGROUND_PID, REID_LOSS_REGISTRY, OIMLoss
from person_search.modeling.roi_heads import OIMROIHeads

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ITERS = 3
PS_OVERRIDES = [
    "DATASETS.TRAIN", "('toy_cuhk_sysu_train',)",
    "DATASETS.TEST", "('toy_cuhk_sysu_test',)",
    "INPUT.MIN_SIZE_TRAIN", "(120,)", "INPUT.MAX_SIZE_TRAIN", "160",
    "INPUT.MIN_SIZE_TEST", "120", "INPUT.MAX_SIZE_TEST", "160",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.RPN.POST_NMS_TOPK_TEST", "16",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.PERSON_SEARCH.EMBEDDING_DIM", "16", "MODEL.OIM.QUEUE_SIZE", "8",
    "MODEL.ROI_HEADS.NAME", "ExtensionTestROIHeads",
    "MODEL.PERSON_SEARCH.REID_LOSS", "ExtensionTestMarginLoss",
    "INPUT.PERSON_SEARCH_MAPPER", "ExtensionTestMapper",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(ITERS), "SOLVER.STEPS", "()",
    "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.EVAL_PERIOD", "0",
]  # fmt: skip


# ------------------------------------------------------------------- registered from outside
@ROI_HEADS_REGISTRY.register()
class ExtensionTestROIHeads(OIMROIHeads):
    """OIM heads with a feature transform: halve the RoI maps, add an auxiliary loss."""

    calls: list[tuple[int, bool]] = []  # (number of RoIs, training) per call

    def transform_roi_features(self, roi_features, boxes, extra_features):
        type(self).calls.append((roi_features.shape[0], self.training))
        return 0.5 * roi_features, {"loss_ext_transform": 1e-3 * roi_features.pow(2).mean()}


@REID_LOSS_REGISTRY.register()
class ExtensionTestMarginLoss(OIMLoss):
    """OIM whose target logit is lowered by ``scalar * margin`` (an additive cosine margin, as
    IIDFC's FC loss puts its margin on the OIM logits), built on the public loss API."""

    margin = 0.2

    def forward(self, features, pids):
        self.check_inputs(features, pids)
        foreground = pids != BACKGROUND_PID
        features, pids = features[foreground], pids[foreground]
        logits = self.logits(features).float()
        labelled = pids >= 0
        margin = torch.zeros_like(logits)
        margin[labelled.nonzero().squeeze(1), pids[labelled]] = self.scalar * self.margin
        loss = F.cross_entropy((logits - margin)[labelled], pids[labelled], reduction="sum")
        if self.training:
            self.update(features.detach(), pids)
        return {"loss_margin_oim": loss / labelled.sum().clamp(min=1)}


@MAPPER_REGISTRY.register()
class ExtensionTestMapper(PersonSearchDatasetMapper):
    """The library's mapper, marking what it mapped; with masks on, gives labelled persons of
    every other image (by image id) a box-shaped polygon: partial masks, as MaskGuidedPS."""

    mapped: list[tuple[bool, str]] = []  # (is_train, image id) per call

    def __call__(self, dataset_dict):
        type(self).mapped.append((self.is_train, dataset_dict["image_id"]))
        if self.is_train and self.use_instance_mask and _has_masks(dataset_dict["image_id"]):
            annotations = [_with_box_mask(a) for a in dataset_dict["annotations"]]
            dataset_dict = dict(dataset_dict, annotations=annotations)
        out = super().__call__(dataset_dict)
        out["ext_mapped"] = True
        return out


def _has_masks(image_id: str) -> bool:
    return zlib.crc32(image_id.encode()) % 2 == 0


def _with_box_mask(annotation: dict) -> dict:
    if annotation["person_id"] < 0:
        return annotation
    x1, y1, x2, y2 = annotation["bbox"]  # XYXY_ABS in the toy loaders
    return dict(annotation, segmentation=[[x1, y1, x2, y1, x2, y2, x1, y2]])


class ExtensionTestTrainer(PersonSearchTrainer):
    """Overrides Detectron2's ``build_train_loader(cls, cfg)`` as Detectron2's projects do."""

    loader_cfgs: list[tuple[int, int]] = []  # (DATALOADER.SEED, START_ITER) per call
    batches: list[list[dict]] = []

    @classmethod
    def build_train_loader(cls, cfg):
        cls.loader_cfgs.append((cfg.DATALOADER.SEED, cfg.DATALOADER.START_ITER))
        loader = build_person_search_train_loader(cfg)
        return _Recorded(loader, cls.batches)


class _Recorded:
    """An infinite loader whose batches are also appended to a list."""

    def __init__(self, loader, out: list):
        self.loader, self.out = loader, out

    def __iter__(self):
        for batch in self.loader:
            self.out.append(batch)
            yield batch


def _reset() -> None:
    for recorder in (ExtensionTestROIHeads.calls, ExtensionTestMapper.mapped):
        recorder.clear()
    ExtensionTestTrainer.loader_cfgs.clear()
    ExtensionTestTrainer.batches.clear()


def _train(cfg) -> tuple[ExtensionTestTrainer, dict]:
    trainer = ExtensionTestTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer, ExtensionTestTrainer.test(cfg, trainer.model)


def _ps_cfg(tmp_path, *extra: str):
    cfg = load_config(str(CONFIGS / "oim" / "oim_toy_cuhk_sysu.yaml"), [*PS_OVERRIDES, *extra])
    cfg.OUTPUT_DIR = str(tmp_path / "output")
    cfg.freeze()
    return cfg


def _check_evaluation(cfg, trainer, results: dict) -> None:
    """Training losses were finite; the evaluator ran the CUHK-SYSU protocol over every query
    (its saved results hold one unit-norm embedding per query)."""
    metrics = trainer.storage.history("total_loss").values()
    assert len(metrics) == ITERS and all(math.isfinite(v) for v, _ in metrics)
    assert set(results) == {"search", "detection"}
    assert {"mAP", "top1", "gallery_50/mAP", "occlusion/mAP"} <= set(results["search"])
    name = cfg.DATASETS.TEST[0]
    saved = load_search_results(os.path.join(cfg.OUTPUT_DIR, "inference", name, RESULTS_FILE))
    queries = saved.query_embeddings
    assert queries.shape == (len(saved.protocol.queries), 16) and len(queries) > 0
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-4)


# ------------------------------------------------------------------------------------- tests
def test_person_search_extension_points(toy_datasets, tmp_path):
    _reset()
    cfg = _ps_cfg(tmp_path)
    trainer, results = _train(cfg)
    model = trainer.model
    assert type(model.roi_heads) is ExtensionTestROIHeads
    assert type(model.roi_heads.reid_loss) is ExtensionTestMarginLoss
    # The trainer's loader override got the data stream's position through the config.
    assert ExtensionTestTrainer.loader_cfgs == [(trainer._data_seed, 0)]
    assert trainer._data_seed >= 0
    # Every training batch came from the registered mapper, through the override.
    assert len(ExtensionTestTrainer.batches) == ITERS
    assert all(x["ext_mapped"] for b in ExtensionTestTrainer.batches for x in b)
    # The registered loss and the transform's auxiliary loss trained, every iteration.
    for name in ("loss_margin_oim", "loss_ext_transform", "loss_cls", "loss_box_reg"):
        values = trainer.storage.history(name).values()
        assert len(values) == ITERS and all(math.isfinite(v) for v, _ in values), name
    assert "loss_oim" not in trainer.storage.histories()
    assert model.roi_heads.reid_loss.lut.any()  # it updated the memory (public update())
    # The transform ran in training and in inference (gallery images and queries), the test
    # images went through the registered mapper, and the evaluator gave its metrics.
    modes = {training for _, training in ExtensionTestROIHeads.calls}
    assert modes == {True, False}
    assert any(not is_train for is_train, _ in ExtensionTestMapper.mapped)
    _check_evaluation(cfg, trainer, results)


def test_person_search_partial_masks(toy_datasets, tmp_path):
    _reset()
    cfg = _ps_cfg(tmp_path, "MODEL.MASK_ON", "True")
    received: list = []
    original = OIMROIHeads.forward_mask

    def recording_forward_mask(self, roi_features, instances, *args, **kwargs):
        if self.training:
            received.append([p.gt_has_mask.clone() for p in instances if p.has("gt_has_mask")])
        return original(self, roi_features, instances, *args, **kwargs)

    mask_head_inputs: list = []
    ExtensionTestROIHeads.forward_mask = recording_forward_mask
    try:
        trainer = ExtensionTestTrainer(cfg)
        heads = trainer.model.roi_heads
        heads.mask_head.register_forward_pre_hook(
            lambda module, args: mask_head_inputs.append(args[1]) if module.training else None
        )
        trainer.resume_or_load(resume=False)
        trainer.train()
        results = ExtensionTestTrainer.test(cfg, trainer.model)
    finally:
        del ExtensionTestROIHeads.forward_mask
    # Training images had persons with and without masks.
    flags = torch.cat([x["instances"].gt_has_mask for b in ExtensionTestTrainer.batches for x in b])
    assert flags.any() and not flags.all()
    # Sampled proposals of persons without masks reached the mask step ...
    sampled = torch.cat([f for step in received for f in step])
    assert (~sampled).any() and sampled.any()
    # ... but the mask head (and so the loss) only ever saw proposals of persons with masks.
    seen = [p for step in mask_head_inputs for p in step]
    assert sum(len(p) for p in seen) > 0
    assert all(bool(p.gt_has_mask.all()) for p in seen)
    values = trainer.storage.history("loss_mask").values()
    assert len(values) == ITERS and all(math.isfinite(v) for v, _ in values)
    assert any(v > 0 for v, _ in values)
    _check_evaluation(cfg, trainer, results)


# ----------------------------------------------------------------------------------- re-id
REID_MAPPER_REGISTRY = getattr(person_search.data, "REID_MAPPER_REGISTRY", None)


@pytest.mark.skipif(
    REID_MAPPER_REGISTRY is None,
    reason="the re-id mapper registry (issue 9, built in parallel) is not in this checkout",
)
def test_reid_extension_points(toy_datasets, tmp_path):
    from person_search.data.reid_mapper import ReIDDatasetMapper

    class ExtensionTestReIDMapper(ReIDDatasetMapper):
        mapped: list[bool] = []  # is_train per call

        def __call__(self, dataset_dict):
            type(self).mapped.append(self.is_train)
            return dict(super().__call__(dataset_dict), ext_mapped=True)

    class ExtensionTestReIDTrainer(ReIDTrainer):
        batches: list[list[dict]] = []

        @classmethod
        def build_train_loader(cls, cfg):
            return _Recorded(build_reid_train_loader(cfg), cls.batches)

    if "ExtensionTestReIDMapper" not in REID_MAPPER_REGISTRY:
        REID_MAPPER_REGISTRY.register(ExtensionTestReIDMapper)
    overrides = [
        "INPUT.REID.MAPPER", "ExtensionTestReIDMapper",
        "INPUT.REID.SIZE_TRAIN", "(64,32)", "INPUT.REID.SIZE_TEST", "(64,32)",
        "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCES", "2",
        "SOLVER.MAX_ITER", str(ITERS), "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "1",
    ]  # fmt: skip
    cfg = load_config(str(CONFIGS / "reid" / "toy_market1501.yaml"), overrides)
    cfg.OUTPUT_DIR = str(tmp_path / "reid")
    cfg.freeze()
    trainer = ExtensionTestReIDTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    results = ExtensionTestReIDTrainer.test(cfg, trainer.model)
    assert len(ExtensionTestReIDTrainer.batches) == ITERS
    assert all(x["ext_mapped"] for b in ExtensionTestReIDTrainer.batches for x in b)
    assert {True, False} <= set(ExtensionTestReIDMapper.mapped)  # train and test loaders
    assert 0.0 < results["reid"]["mAP"] <= 100.0
    assert results["reid"]["num_valid_queries"] > 0
