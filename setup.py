#!/usr/bin/env python
"""Build and install ``person_search``, its compiled extension ``person_search._C`` and the
paper projects' packages (``projects/<Name>/<package>``, e.g. ``pan``: see ``project_packages``).

The extension holds RoIAlign and the multi-granularity occlusion op (C++ for CPU,
CUDA for GPU). CUDA sources are compiled when a CUDA device is visible or when
``FORCE_CUDA=1`` is set (CI does this so that the CUDA code is proven to compile and
link on machines without a GPU). ``setup.py`` imports torch, so install with
``pip install -e . --no-build-isolation`` into an environment that already has torch.
"""

import glob
import os
import shutil
import sys

import torch
from setuptools import find_packages, setup


def _has_cuda_toolkit(root: str) -> bool:
    libs = [os.path.join(root, d, "libcudart.so") for d in ("lib64", "lib")]
    return os.path.isfile(os.path.join(root, "bin", "nvcc")) and any(map(os.path.isfile, libs))


def _locate_cuda_home() -> None:
    """Point ``CUDA_HOME`` at a real toolkit when torch would guess a wrong one.

    torch derives ``CUDA_HOME`` from the ``nvcc`` on PATH (its grandparent folder). When that
    ``nvcc`` is a wrapper script (e.g. ``/usr/local/bin/nvcc`` calling
    ``/usr/local/cuda-13.0/bin/nvcc``), the guess is ``/usr/local`` and linking fails with
    ``cannot find -lcudart``. A user's ``CUDA_HOME``/``CUDA_PATH`` is always respected.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    guess = os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else None
    if guess and _has_cuda_toolkit(guess):
        return
    for root in ("/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)):
        if _has_cuda_toolkit(root):
            os.environ["CUDA_HOME"] = root
            return


_locate_cuda_home()
from torch.utils.cpp_extension import (  # noqa: E402  (reads CUDA_HOME at import)
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("person_search", "layers", "csrc")


def _want_cuda() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if CUDA_HOME is None:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit (nvcc) was found; set CUDA_HOME.")
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def get_extensions():
    cpp_sources = sorted(glob.glob(os.path.join(CSRC, "**", "*.cpp"), recursive=True))
    cuda_sources = sorted(glob.glob(os.path.join(CSRC, "**", "*.cu"), recursive=True))
    if not cpp_sources:
        raise RuntimeError(f"no C++ sources found under {CSRC}")
    define_macros = []
    extra_compile_args = {"cxx": ["-O3", "-std=c++20"]}
    extra_link_args = []
    if sys.platform.startswith("linux"):
        # The CPU kernels split their work with at::parallel_for. torch's Linux builds use
        # OpenMP for it, and ATen's header implements it with `#pragma omp parallel`: without
        # -fopenmp it silently runs on one thread. Linking resolves to the libgomp.so.1 that
        # torch has already loaded, so torch.set_num_threads governs our kernels too.
        extra_compile_args["cxx"].append("-fopenmp")
        extra_link_args.append("-fopenmp")
    extension = CppExtension
    sources = cpp_sources
    if _want_cuda():
        extension = CUDAExtension
        sources = cpp_sources + cuda_sources
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3", "-std=c++20", "--expt-relaxed-constexpr"]
        if not torch.cuda.is_available() and "TORCH_CUDA_ARCH_LIST" not in os.environ:
            # No device to query: build for Ampere and Hopper (A100, H100/H200).
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    return [
        extension(
            "person_search._C",
            sources,
            include_dirs=[os.path.join(HERE, CSRC)],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]


def project_packages() -> tuple[list[str], dict[str, str]]:
    """The Python package of each paper project, installed under its own top-level name:
    ``projects/<Name>/<package>/__init__.py`` -> ``<package>`` (e.g. ``projects/PAN/pan`` ->
    ``import pan``), with its subpackages. Returns ``(packages, package_dir)``."""
    packages, package_dir = [], {}
    for init in sorted(glob.glob(os.path.join("projects", "*", "*", "__init__.py"))):
        root = os.path.dirname(init)
        name = os.path.basename(root)
        if name in package_dir:
            raise RuntimeError(
                f"two projects define the package {name!r}: {package_dir[name]}, {root}"
            )
        package_dir[name] = root
        packages += [name] + [f"{name}.{sub}" for sub in find_packages(where=root)]
    return packages, package_dir


PROJECT_PACKAGES, PROJECT_PACKAGE_DIRS = project_packages()

setup(
    name="person_search",
    version="0.1.0",
    description="Person search and occluded person re-identification on Detectron2",
    packages=find_packages(include=["person_search", "person_search.*"]) + PROJECT_PACKAGES,
    package_dir=PROJECT_PACKAGE_DIRS,
    package_data={"person_search": ["layers/csrc/**/*"]},
    python_requires=">=3.10",
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension},
    zip_safe=False,
)
