"""The compiled extension person_search._C: ops listed under torch.ops.person_search, their
kernels registered per dispatch key, and the CUDA kernels present when built with CUDA."""

import os

import pytest
import torch

from person_search.layers import built_with_cuda, load_extension

OPS = ("roi_align_forward", "roi_align_backward", "multi_granularity_occlusion")


def _has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"person_search::{op}", key)


def test_ops_listed_with_cpu_and_meta_kernels():
    load_extension()
    listed = {
        name.split("::")[1]
        for name in torch._C._dispatch_get_all_op_names()
        if name.startswith("person_search::")
    }
    assert listed == set(OPS)
    for op in OPS:
        assert callable(getattr(torch.ops.person_search, op)), op
        assert _has_kernel(op, "CPU"), op
        assert _has_kernel(op, "Meta"), op
    # the occlusion op is not differentiable and has an Autograd kernel saying so
    assert _has_kernel("multi_granularity_occlusion", "Autograd")


def test_cuda_kernels_registered_iff_built_with_cuda():
    """``built_with_cuda()`` reports the WITH_CUDA macro of the build; the CUDA kernels of
    every op are registered exactly when it is True (and never without a CUDA build)."""
    with_cuda = built_with_cuda()
    assert isinstance(with_cuda, bool)
    for op in OPS:
        assert _has_kernel(op, "CUDA") == with_cuda, op


@pytest.mark.skipif(
    os.environ.get("FORCE_CUDA") != "1", reason="only for builds made with FORCE_CUDA=1 (CI)"
)
def test_force_cuda_build_has_cuda_kernels():
    """CI (.ci/run) exports FORCE_CUDA=1 for both the build and the tests: the extension
    must then hold the CUDA kernels, GPU or not."""
    assert built_with_cuda()
    for op in OPS:
        assert _has_kernel(op, "CUDA"), op
