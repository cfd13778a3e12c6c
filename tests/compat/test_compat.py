"""The Detectron2 v0.6 compat layer: each fix is exercised through the path it repairs."""

import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import person_search
from person_search import compat

needs_stub = pytest.mark.skipif(
    compat.has_real_detectron2_ops(), reason="a real detectron2._C is installed"
)


@needs_stub
def test_stub_ops_raise_clear_error():
    from detectron2 import _C

    for name in (
        "deform_conv_forward",
        "box_iou_rotated",
        "roi_align_rotated_forward",
        "COCOevalAccumulate",
        "nms_rotated",
    ):
        with pytest.raises(compat.MissingDetectron2Op, match=name) as info:
            getattr(_C, name)()
        assert "official Detectron2" in str(info.value)


@needs_stub
def test_rotated_box_paths_raise_clear_error():
    from detectron2.layers import nms_rotated
    from detectron2.structures import RotatedBoxes, pairwise_iou_rotated

    boxes = RotatedBoxes(torch.tensor([[5.0, 5.0, 4.0, 4.0, 0.0]]))
    with pytest.raises(compat.MissingDetectron2Op, match="box_iou_rotated"):
        pairwise_iou_rotated(boxes, boxes)
    with pytest.raises(compat.MissingDetectron2Op, match="nms_rotated"):
        nms_rotated(torch.zeros(2, 5), torch.zeros(2), 0.5)


def test_real_compiled_module_is_left_alone(tmp_path):
    """With an importable detectron2._C, apply() must neither replace nor wrap it."""
    script = textwrap.dedent(
        """
        import importlib.abc, importlib.machinery, sys, types

        class RealC(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path, target=None):
                if name == "detectron2._C":
                    return importlib.machinery.ModuleSpec(name, self)
            def create_module(self, spec):
                mod = types.ModuleType(spec.name)
                mod.box_iou_rotated = lambda a, b: "real op"
                return mod
            def exec_module(self, module):
                pass

        sys.meta_path.insert(0, RealC())
        import person_search
        from person_search import compat
        from detectron2 import _C
        assert _C.box_iou_rotated(1, 2) == "real op", _C
        assert compat.has_real_detectron2_ops()
        assert not any("_C stand-in" in f for f in compat.applied_fixes()), compat.applied_fixes()
        print("OK")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")


def test_apply_is_idempotent():
    first = compat.applied_fixes()
    assert compat.apply() == first


def test_pillow_linear_alias_and_extent_transform():
    from detectron2.data.transforms import ExtentTransform
    from PIL import Image

    assert Image.LINEAR == Image.BILINEAR
    img = (np.arange(20 * 30 * 3) % 255).astype(np.uint8).reshape(20, 30, 3)
    out = ExtentTransform(src_rect=(0, 0, 30, 20), output_size=(10, 15)).apply_image(img)
    assert out.shape == (10, 15, 3)


def test_numpy_aliases_fix_masks():
    from detectron2.structures.masks import BitMasks, PolygonMasks, polygons_to_bitmask

    empty = polygons_to_bitmask([], 4, 5)
    assert empty.dtype == bool and empty.shape == (4, 5) and not empty.any()
    square = [np.array([1.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 3.0])]
    bitmask = polygons_to_bitmask(square, 5, 5)
    assert bitmask.dtype == bool and bitmask.sum() == 4
    masks = BitMasks.from_polygon_masks(PolygonMasks([square]), 5, 5)
    assert masks.tensor.shape == (1, 5, 5)


def test_class_histogram_is_not_silently_skipped(caplog):
    """Without np.int, data/build.py swallowed an AttributeError and logged nothing."""
    from detectron2.data.build import print_instances_class_histogram

    dicts = [{"annotations": [{"category_id": 0}, {"category_id": 0}]}]
    with caplog.at_level(logging.INFO):
        logger = logging.getLogger("detectron2")
        propagate = logger.propagate
        logger.propagate = True
        try:
            print_instances_class_histogram(dicts, ["person"])
        finally:
            logger.propagate = propagate
    assert "person" in caplog.text and "2" in caplog.text


def test_map_dataset_falls_back_when_mapper_returns_none():
    from detectron2.data.common import MapDataset

    dataset = MapDataset(list(range(5)), lambda x: None if x == 0 else x * 10)
    assert dataset[0] in {10, 20, 30, 40}
    assert dataset[3] == 30


def test_lr_scheduler_hook_saves_torch_scheduler_state():
    from detectron2.engine.hooks import LRScheduler

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    scheduler.step()
    hook = LRScheduler(optimizer, scheduler)
    state = hook.state_dict()
    assert state["last_epoch"] == 1

    optimizer2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler2 = torch.optim.lr_scheduler.StepLR(optimizer2, step_size=2)
    LRScheduler(optimizer2, scheduler2).load_state_dict(state)
    assert scheduler2.last_epoch == 1


def test_model_zoo_imports():
    """detectron2.model_zoo needs pkg_resources (setuptools < 80)."""
    import detectron2.model_zoo  # noqa: F401


def test_build_model_imports():
    from detectron2.modeling import build_model  # noqa: F401

    assert person_search.__version__


def test_import_prints_no_torchscript_deprecation():
    """fvcore/Detectron2 script helpers at import; `import person_search` keeps that quiet."""
    code = "import person_search; from detectron2.modeling import build_model"
    result = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch.jit.script" not in result.stderr


def test_torchscript_filter_is_scoped():
    """Only that message, only inside the block: later user code still sees the warning."""
    import warnings

    message = "`torch.jit.script` is deprecated. Please switch to `torch.compile`."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with compat.quiet_torchscript_deprecation():
            warnings.warn(message, FutureWarning, stacklevel=1)
            warnings.warn("another future change", FutureWarning, stacklevel=1)
        warnings.warn(message, FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another future change", message]
