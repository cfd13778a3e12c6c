"""Multi-level RoI pooler (person_search.layers.pooler) against Detectron2's ROIPooler and a
per-box torchvision.ops.roi_align on the level Detectron2's rule assigns."""

import math

import pytest
import torch
import torchvision

import person_search  # noqa: F401  (Detectron2 compat layer before detectron2 imports)

# isort: split
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.poolers import assign_boxes_to_levels as d2_assign_boxes_to_levels
from detectron2.structures import Boxes

from person_search.config import get_cfg
from person_search.layers import MultiLevelROIPooler, assign_boxes_to_levels, build_roi_pooler

FPN_SCALES = (1 / 4, 1 / 8, 1 / 16, 1 / 32)  # P2..P5


def _features(gen: torch.Generator, num_images: int, channels: int, image_hw, scales, dtype):
    h, w = image_hw
    return [
        torch.randn(
            num_images, channels, math.ceil(h * s), math.ceil(w * s), generator=gen, dtype=dtype
        )
        for s in scales
    ]


def _box_lists(gen: torch.Generator, num_images: int, image_hw):
    """Per image 0..12 boxes of sizes 2..700 px (some empty, some partly outside); float32
    like every Detectron2 ``Boxes``."""
    h, w = image_hw
    lists = []
    for _ in range(num_images):
        k = int(torch.randint(0, 13, (1,), generator=gen))
        xy = torch.rand(k, 2, generator=gen) * torch.tensor([w * 1.1, h * 1.1]) - 20
        size = torch.exp(torch.rand(k, 2, generator=gen) * math.log(350.0)) * 2
        boxes = torch.cat([xy, xy + size], dim=1)
        boxes[: k // 5, 2:] = boxes[: k // 5, :2]  # empty boxes
        lists.append(Boxes(boxes))
    return lists


def test_level_assignment_hand_computed():
    """floor(4 + log2(sqrt(area) / 224)) clamped to [2, 5], minus 2."""
    sizes = [224.0, 223.9, 112.0, 111.0, 448.0, 896.0, 2000.0, 56.0, 10.0, 0.0]
    expected = [4, 3, 3, 2, 5, 5, 5, 2, 2, 2]
    boxes = Boxes(torch.tensor([[5.0, 7.0, 5.0 + s, 7.0 + s] for s in sizes]))
    levels = assign_boxes_to_levels([boxes], 2, 5, 224, 4)
    assert levels.tolist() == [e - 2 for e in expected]
    # a 100 x 400 box has sqrt(area) 200 -> level 3
    wide = Boxes(torch.tensor([[0.0, 0.0, 100.0, 400.0]]))
    assert assign_boxes_to_levels([wide], 2, 5, 224, 4).tolist() == [1]
    # other canonical size and level
    assert assign_boxes_to_levels([boxes], 3, 6, 112, 5).tolist()[:3] == [3, 2, 2]


def test_level_assignment_matches_detectron2():
    gen = torch.Generator().manual_seed(0)
    box_lists = _box_lists(gen, 6, (900, 1500))
    for args in [(2, 5, 224, 4), (3, 6, 224, 4), (2, 5, 160, 3), (4, 4, 224, 4)]:
        ours = assign_boxes_to_levels(box_lists, *args)
        ref = d2_assign_boxes_to_levels(box_lists, *args)
        assert torch.equal(ours, ref), args


@pytest.mark.parametrize("pooler_type", ["ROIAlign", "ROIAlignV2"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_multi_level_matches_detectron2_and_torchvision(pooler_type, sampling_ratio):
    gen = torch.Generator().manual_seed(1 + sampling_ratio)
    image_hw = (320, 480)
    feats = _features(gen, 3, 4, image_hw, FPN_SCALES, torch.float64)
    box_lists = _box_lists(gen, 3, image_hw)
    assert sum(len(b) for b in box_lists) > 5
    ours_in = [f.clone().requires_grad_() for f in feats]
    ref_in = [f.clone().requires_grad_() for f in feats]
    ours = MultiLevelROIPooler(7, FPN_SCALES, sampling_ratio, pooler_type)(ours_in, box_lists)
    ref = ROIPooler(7, FPN_SCALES, sampling_ratio, pooler_type)(ref_in, box_lists)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    grad = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    ours.backward(grad)
    ref.backward(grad)
    for a, b in zip(ours_in, ref_in):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)

    # independently: each box pooled by torchvision from the level Detectron2's rule gives
    aligned = pooler_type == "ROIAlignV2"
    row = 0
    used_levels = set()
    for n, boxes in enumerate(box_lists):
        for box in boxes.tensor:
            size = math.sqrt(max(float((box[2] - box[0]) * (box[3] - box[1])), 0.0))
            level = math.floor(4 + math.log2(size / 224 + 1e-8)) if size > 0 else 2
            level = min(max(level, 2), 5) - 2
            used_levels.add(level)
            expected = torchvision.ops.roi_align(
                feats[level][n : n + 1],
                [box[None].double()],
                7,
                FPN_SCALES[level],
                sampling_ratio,
                aligned,
            )
            torch.testing.assert_close(ours[row : row + 1].detach(), expected, rtol=0, atol=1e-12)
            row += 1
    assert row == ours.shape[0] and len(used_levels) >= 3


def test_single_level_and_rectangular_output():
    gen = torch.Generator().manual_seed(4)
    feats = _features(gen, 2, 3, (160, 96), (1 / 16,), torch.float32)
    box_lists = _box_lists(gen, 2, (160, 96))
    ours = MultiLevelROIPooler((14, 6), (1 / 16,), 0, "ROIAlignV2")(feats, box_lists)
    ref = ROIPooler((14, 6), (1 / 16,), 0, "ROIAlignV2")(feats, box_lists)
    assert ours.shape == (sum(len(b) for b in box_lists), 3, 14, 6)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_no_boxes_and_no_images():
    feats = [torch.randn(2, 5, 20, 20), torch.randn(2, 5, 10, 10)]
    pooler = MultiLevelROIPooler(3, (1 / 4, 1 / 8), 2, "ROIAlign")
    empty = [Boxes(torch.zeros(0, 4)), Boxes(torch.zeros(0, 4))]
    assert pooler(feats, empty).shape == (0, 5, 3, 3)
    out = pooler([f[:0] for f in feats], [])
    assert out.shape == (0, 5, 3, 3) and out.dtype == torch.float32


def _roi_heads_cfg(impl: str, pooler_type: str):
    cfg = get_cfg()
    cfg.MODEL.ROI_POOLER_IMPL = impl
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = pooler_type
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
    cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
    return cfg


def _pooler_from_cfg(cfg, stride: int):
    """Built the way a C4 ROI head builds it: the box head keys and the feature stride."""
    head = cfg.MODEL.ROI_BOX_HEAD
    return build_roi_pooler(
        cfg, head.POOLER_RESOLUTION, (1.0 / stride,), head.POOLER_SAMPLING_RATIO, head.POOLER_TYPE
    )


@pytest.mark.parametrize("pooler_type", ["ROIAlign", "ROIAlignV2"])
def test_build_roi_pooler_selects_by_config(pooler_type):
    assert get_cfg().MODEL.ROI_POOLER_IMPL == "person_search"
    ours = _pooler_from_cfg(_roi_heads_cfg("person_search", pooler_type), 16)
    d2 = _pooler_from_cfg(_roi_heads_cfg("detectron2", pooler_type), 16)
    assert isinstance(ours, MultiLevelROIPooler) and isinstance(d2, ROIPooler)
    assert ours.output_size == (14, 14)
    assert ours.level_poolers[0].aligned == (pooler_type == "ROIAlignV2")
    assert ours.level_poolers[0].spatial_scale == 1 / 16
    gen = torch.Generator().manual_seed(6)
    feats = _features(gen, 2, 8, (300, 200), (1 / 16,), torch.float32)
    box_lists = _box_lists(gen, 2, (300, 200))
    torch.testing.assert_close(ours(feats, box_lists), d2(feats, box_lists), rtol=1e-5, atol=1e-6)


def test_build_roi_pooler_errors():
    cfg = _roi_heads_cfg("torchvision", "ROIAlignV2")
    with pytest.raises(ValueError, match="ROI_POOLER_IMPL must be one of .* got 'torchvision'"):
        _pooler_from_cfg(cfg, 16)
    with pytest.raises(ValueError, match="pooler_type must be one of .* got 'ROIPool'"):
        _pooler_from_cfg(_roi_heads_cfg("person_search", "ROIPool"), 16)


def test_pooler_argument_errors():
    with pytest.raises(ValueError, match="pooler_type must be one of"):
        MultiLevelROIPooler(7, FPN_SCALES, 0, "ROIAlignRotated")
    with pytest.raises(ValueError, match="at least one feature-map scale"):
        MultiLevelROIPooler(7, (), 0, "ROIAlign")
    with pytest.raises(ValueError, match="strides must be powers of 2"):
        MultiLevelROIPooler(7, (1 / 12,), 0, "ROIAlign")
    with pytest.raises(ValueError, match="do not form a pyramid"):
        MultiLevelROIPooler(7, (1 / 4, 1 / 16), 0, "ROIAlign")
    with pytest.raises(ValueError, match="do not form a pyramid"):
        MultiLevelROIPooler(7, (1 / 8, 1 / 4), 0, "ROIAlign")
    with pytest.raises(ValueError, match="canonical_box_size must be > 0"):
        MultiLevelROIPooler(7, FPN_SCALES, 0, "ROIAlign", canonical_box_size=0)
    with pytest.raises(ValueError, match="output_size"):
        MultiLevelROIPooler(0, FPN_SCALES, 0, "ROIAlign")
    pooler = MultiLevelROIPooler(7, (1 / 4, 1 / 8), 0, "ROIAlign")
    feats = [torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8)]
    boxes = [Boxes(torch.tensor([[0.0, 0, 10, 10]]))] * 2
    with pytest.raises(ValueError, match="expected 2 feature maps, got 1"):
        pooler(feats[:1], boxes)
    with pytest.raises(ValueError, match="got 1 box lists for a batch of 2 images"):
        pooler(feats, boxes[:1])
