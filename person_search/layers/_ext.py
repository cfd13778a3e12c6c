"""Lazy access to the compiled extension ``person_search._C``.

``import person_search`` never needs the extension: it is imported the first time an op is
used (or when :func:`load_extension` is called). Importing it registers the ops under
``torch.ops.person_search`` (``roi_align_forward``, ``roi_align_backward``,
``multi_granularity_occlusion``) and their shape-only ("fake") kernels, so the ops also run
on meta tensors and under ``torch.compile``.
"""

import importlib
from types import ModuleType

import torch

__all__ = ["built_with_cuda", "built_with_openmp", "load_extension", "ops", "registered_ops"]

_EXTENSION = "person_search._C"
_BUILD_HINT = (
    "Build it from the repository root with `make install` "
    "(or `pip install -e . --no-build-isolation` in an environment that has torch; "
    "set FORCE_CUDA=1 to compile the CUDA kernels without a visible GPU)."
)
_loaded: ModuleType | None = None


def load_extension() -> ModuleType:
    """Import ``person_search._C`` (once) and return it.

    Raises:
        ImportError: if the extension is not built or cannot be loaded, with the build command.
    """
    global _loaded
    if _loaded is None:
        try:
            module = importlib.import_module(_EXTENSION)
        except ImportError as e:
            raise ImportError(
                f"The compiled ops of person_search ({_EXTENSION}) could not be imported: {e}. "
                + _BUILD_HINT
            ) from e
        _register_fake_kernels()
        _loaded = module
    return _loaded


def built_with_cuda() -> bool:
    """Whether ``person_search._C`` was compiled with its CUDA kernels (``WITH_CUDA``)."""
    return bool(load_extension().built_with_cuda())


def built_with_openmp() -> bool:
    """Whether the CPU kernels of ``person_search._C`` were compiled with OpenMP, i.e. split
    their work over torch's intra-op threads (``torch.get_num_threads()``)."""
    return bool(load_extension().built_with_openmp())


def ops() -> torch._ops._OpNamespace:
    """``torch.ops.person_search`` after making sure the extension is loaded."""
    load_extension()
    return torch.ops.person_search


def registered_ops() -> list[str]:
    """Names of the ops the extension registers (``torch.ops.person_search.<name>``), sorted;
    loads the extension first (``torch.ops.person_search`` lists nothing before, as the
    extension loads lazily)."""
    load_extension()
    prefix = "person_search::"
    return sorted(
        name[len(prefix) :]
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith(prefix)
    )


def _register_fake_kernels() -> None:
    """Shape-only kernels (meta tensors, ``torch.compile``); they mirror the C++ schemas."""

    @torch.library.register_fake("person_search::roi_align_forward")
    def _roi_align_forward(
        input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned
    ):
        return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))

    @torch.library.register_fake("person_search::roi_align_backward")
    def _roi_align_backward(
        grad,
        rois,
        spatial_scale,
        pooled_height,
        pooled_width,
        batch_size,
        channels,
        height,
        width,
        sampling_ratio,
        aligned,
    ):
        return grad.new_empty((batch_size, channels, height, width))

    @torch.library.register_fake("person_search::multi_granularity_occlusion")
    def _occlusion(
        images,
        boxes,
        grid_rows,
        grid_cols,
        cell_prob,
        fill_mode,
        fill_value,
        noise_low,
        noise_high,
        seed,
    ):
        max_cells = max(r * c for r, c in zip(grid_rows, grid_cols))
        occluded = images.new_empty((len(grid_rows), *images.shape))
        masks = images.new_empty((len(grid_rows), boxes.shape[0], max_cells), dtype=torch.bool)
        return occluded, masks
