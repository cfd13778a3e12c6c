"""The compiled extension person_search._C: ops listed under torch.ops.person_search, their
kernels registered per dispatch key, and the CUDA kernels present when built with CUDA."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from person_search.layers import (
    built_with_cuda,
    built_with_openmp,
    load_extension,
    multi_granularity_occlusion,
    registered_ops,
    roi_align,
)

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
    assert registered_ops() == sorted(OPS)


def test_readme_check_command_prints_the_registered_ops():
    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text()
    found = re.search(r'\.venv/bin/python -c "(import person_search\.layers[^"]*)"', readme)
    assert found, "README.md has no check command printing the registered ops"
    proc = subprocess.run(
        [sys.executable, "-c", found.group(1)], capture_output=True, text=True, cwd=repo
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(f"'{op}'" in proc.stdout for op in OPS), proc.stdout


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


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or "OpenMP" not in torch.__config__.parallel_info(),
    reason="torch here does not run its intra-op threads on OpenMP",
)
def test_cpu_kernels_use_torchs_openmp_threads():
    """ATen's OpenMP ``parallel_for`` is a header ``#pragma omp parallel``: the extension must
    be compiled with -fopenmp or its CPU kernels silently run on one thread."""
    assert built_with_openmp()


def test_cpu_kernels_give_the_same_bits_on_one_and_two_threads():
    """The CPU kernels split work so that no output depends on the thread count."""
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(2, 16, 24, 32, generator=gen, dtype=torch.float64)
    xy = torch.rand(40, 2, generator=gen, dtype=torch.float64) * torch.tensor([200.0, 150.0])
    wh = torch.rand(40, 2, generator=gen, dtype=torch.float64) * 120 + 1
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=gen).double(), xy, xy + wh], 1)
    images = torch.randint(0, 256, (3, 3, 90, 120), generator=gen, dtype=torch.uint8)
    boxes = torch.tensor(
        [[0, 5, 5, 60, 80], [0, 30, 10, 100, 85], [1, 0, 0, 120, 90], [2, 10, 20, 50, 70]],
        dtype=torch.float64,
    )

    def run():
        feats = features.clone().requires_grad_()
        pooled = roi_align(feats, rois, (7, 7), 1 / 8, 0, True)
        (grad,) = torch.autograd.grad((pooled * pooled.detach().cos()).sum(), feats)
        occluded, masks = multi_granularity_occlusion(
            images, boxes, [(2, 1), (2, 2), (3, 3)], 0.5, "noise", 7
        )
        return pooled.detach(), grad, occluded, masks

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)
