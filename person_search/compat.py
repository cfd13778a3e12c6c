"""Make Detectron2 v0.6 work on today's stack (Python 3.11, torch 2.x, numpy 2, Pillow 10+).

Applied once by ``import person_search`` (:func:`apply`). Every fix is applied **only when
needed**, so a Detectron2 built from source with its compiled ops, or a newer one, is used
untouched. The breakages and why each fix is minimal are written down in
``../shared/reference/detectron2-v0.6-compat.md`` and in the README ("Detectron2 compat").

Fixes, each guarded by a check that the breakage is present:

1. ``detectron2._C`` missing (the PyPI sdist ``pb1-detectron2`` ships no C++ sources): a
   stand-in module is registered whose ops (deformable conv, rotated boxes / NMS / RoIAlign,
   fast COCO evaluation) raise :class:`MissingDetectron2Op` naming the op and how to get it.
   person_search never calls them (it uses its own RoIAlign and ``COCOEvaluator`` with
   ``use_fast_impl=False``).
2. Pillow >= 10 removed ``Image.LINEAR``: aliased to ``Image.BILINEAR``.
3. numpy >= 1.24 removed ``np.int`` / ``np.float`` / ``np.str`` / ``np.object`` (and numpy
   1.24-1.26 ``np.bool``): aliased to the builtins. Without it ``data/build.py`` silently
   skips its class histogram, and ``structures/masks.py`` crashes.
4. Python 3.11's ``random.sample`` rejects a set: ``MapDataset.__getitem__`` (used when a
   mapper returns ``None``) samples from a sorted list instead.
5. torch >= 2.0 schedulers derive from ``LRScheduler`` not ``_LRScheduler``: the
   ``LRScheduler`` hook's ``state_dict``/``load_state_dict`` silently skipped them; they now
   check the new base class.
6. torch 2.14 deprecates ``torch.jit.script``, which fvcore and Detectron2 call at import
   time: ``import person_search`` imports them inside :func:`quiet_torchscript_deprecation`
   so that every command does not print that ``FutureWarning``.

The optimizer state (not saved by v0.6's ``DefaultTrainer``) and torch's ``weights_only``
loading are handled in :mod:`person_search.engine`, not here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import random
import sys
import types

__all__ = [
    "MissingDetectron2Op",
    "apply",
    "applied_fixes",
    "has_real_detectron2_ops",
    "quiet_torchscript_deprecation",
]

logger = logging.getLogger(__name__)

# Names exported by Detectron2 v0.6's compiled module (detectron2/layers/csrc/vision.cpp).
_D2_C_OPS = (
    "box_iou_rotated",
    "nms_rotated",
    "roi_align_rotated_forward",
    "roi_align_rotated_backward",
    "deform_conv_forward",
    "deform_conv_backward_input",
    "deform_conv_backward_filter",
    "modulated_deform_conv_forward",
    "modulated_deform_conv_backward",
    "COCOevalAccumulate",
    "COCOevalEvaluateImages",
    "InstanceAnnotation",
    "ImageEvaluation",
)

_applied: list[str] = []
_STUB_FLAG = "__person_search_stub__"


class MissingDetectron2Op(RuntimeError):
    """Raised when code calls a Detectron2 compiled op that this installation lacks."""


def _missing_op(name: str):
    def op(*args, **kwargs):
        raise MissingDetectron2Op(
            f"detectron2._C.{name} is not available: this Detectron2 was installed without its "
            "compiled C++/CUDA ops (PyPI sdist pb1-detectron2). person_search does not use it. "
            "To get it, install the official Detectron2 from source (README.md, section "
            "'Using the official Detectron2'), which person_search then uses unchanged."
        )

    op.__name__ = name
    op.__qualname__ = name
    return op


def _make_stub_c() -> types.ModuleType:
    stub = types.ModuleType("detectron2._C")
    stub.__doc__ = "person_search stand-in for detectron2._C (no compiled ops installed)."
    setattr(stub, _STUB_FLAG, True)
    for name in _D2_C_OPS:
        setattr(stub, name, _missing_op(name))
    stub.get_compiler_version = lambda: "not compiled (person_search stand-in)"
    stub.get_cuda_version = lambda: "not compiled (person_search stand-in)"
    stub.has_cuda = lambda: False
    return stub


def has_real_detectron2_ops() -> bool:
    """True when ``detectron2._C`` is Detectron2's own compiled module (not our stand-in)."""
    mod = sys.modules.get("detectron2._C")
    if mod is not None:
        return not getattr(mod, _STUB_FLAG, False)
    return importlib.util.find_spec("detectron2._C") is not None


def _install_c_stub() -> None:
    import detectron2

    if "detectron2._C" in sys.modules:
        return
    try:
        importlib.import_module("detectron2._C")
        return  # the real compiled module: leave it alone
    except ImportError:
        pass
    stub = _make_stub_c()
    sys.modules["detectron2._C"] = stub
    detectron2._C = stub
    _applied.append("detectron2._C stand-in (compiled ops missing)")
    _register_missing_torch_op()


_torch_op_library = None  # keeps the torch.library registration alive


def _register_missing_torch_op() -> None:
    """Define ``torch.ops.detectron2.nms_rotated`` (used by ``layers.nms_rotated``) to raise."""
    global _torch_op_library
    import torch

    try:
        torch.ops.detectron2.nms_rotated  # noqa: B018  (probe: the real op is registered)
        return
    except (AttributeError, RuntimeError):
        pass
    raise_missing = _missing_op("nms_rotated")
    lib = torch.library.Library("detectron2", "DEF")
    lib.define("nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor")

    def nms_rotated(boxes, scores, iou_threshold):
        raise_missing()

    lib.impl("nms_rotated", nms_rotated, "CompositeExplicitAutograd")
    _torch_op_library = lib
    _applied.append("torch.ops.detectron2.nms_rotated stand-in")


def _fix_pillow() -> None:
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR
        _applied.append("PIL.Image.LINEAR = BILINEAR")


def _fix_numpy_aliases() -> None:
    import warnings

    import numpy as np

    aliases = (("bool", bool), ("int", int), ("float", float), ("str", str), ("object", object))
    for name, value in aliases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            present = hasattr(np, name)
        if not present:
            setattr(np, name, value)
            _applied.append(f"np.{name} = {value.__name__}")


def _sample_fallback(self, idx):
    """``MapDataset.__getitem__`` of Detectron2 v0.6, with the fallback pool sampled as a list."""
    retry_count = 0
    cur_idx = int(idx)
    while True:
        data = self._map_func(self._dataset[cur_idx])
        if data is not None:
            self._fallback_candidates.add(cur_idx)
            return data
        retry_count += 1
        self._fallback_candidates.discard(cur_idx)
        cur_idx = self._rng.sample(sorted(self._fallback_candidates), k=1)[0]
        if retry_count >= 3:
            logging.getLogger("detectron2.data.common").warning(
                f"Failed to apply `_map_func` for idx: {idx}, retry count: {retry_count}"
            )


def _fix_map_dataset() -> None:
    from detectron2.data import common

    getitem = common.MapDataset.__getitem__
    try:
        src = inspect.getsource(getitem)
    except (OSError, TypeError):
        return
    if "sample(self._fallback_candidates" not in src:
        return  # fixed upstream, or rewritten: nothing to do
    try:
        random.Random(0).sample({1}, k=1)
        return  # this Python still accepts sets
    except TypeError:
        pass
    common.MapDataset.__getitem__ = _sample_fallback
    _applied.append("MapDataset fallback samples a list (Python >= 3.11)")


def _fix_lr_scheduler_hook() -> None:
    import torch
    from detectron2.engine import hooks

    base = getattr(torch.optim.lr_scheduler, "LRScheduler", None)
    if base is None:
        return
    try:
        src = inspect.getsource(hooks.LRScheduler.state_dict)
    except (OSError, TypeError):
        return
    if "lr_scheduler._LRScheduler)" not in src:
        return

    def state_dict(self):
        if isinstance(self.scheduler, base):
            return self.scheduler.state_dict()
        return {}

    def load_state_dict(self, state_dict):
        if isinstance(self.scheduler, base):
            logging.getLogger("detectron2.engine.hooks").info("Loading scheduler from state_dict")
            self.scheduler.load_state_dict(state_dict)

    hooks.LRScheduler.state_dict = state_dict
    hooks.LRScheduler.load_state_dict = load_state_dict
    _applied.append("LRScheduler hook saves torch>=2 schedulers")


_done = False


@contextlib.contextmanager
def quiet_torchscript_deprecation():
    """Silence torch's ``torch.jit.script`` deprecation ``FutureWarning`` inside the block.

    fvcore and Detectron2 v0.6 script a few helpers at import time; each import would print
    the warning, which users cannot act on. Only that message is filtered, only while the
    block runs (``import person_search`` wraps its imports of Detectron2 in it).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
        )
        yield


def apply() -> list[str]:
    """Apply every needed fix once; returns the descriptions of the fixes applied."""
    global _done
    if _done:
        return list(_applied)
    _done = True
    _fix_pillow()
    _fix_numpy_aliases()
    _install_c_stub()
    _fix_map_dataset()
    _fix_lr_scheduler_hook()
    if _applied:
        logger.debug("person_search.compat applied: %s", "; ".join(_applied))
    return list(_applied)


def applied_fixes() -> list[str]:
    """The fixes :func:`apply` made in this process (empty with a fully modern Detectron2)."""
    return list(_applied)
