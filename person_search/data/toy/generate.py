"""One entry point for every toy dataset format: :func:`make_toy_dataset`.

Writers are called as ``writer(out_dir, seed, **sizes)`` on an existing, empty temporary
directory; :func:`make_toy_dataset` moves it into place only when the writer succeeds.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from .io import atomic_output_dir

__all__ = ["TOY_FORMATS", "make_toy_dataset"]

# Format name -> (module under person_search.data.toy, writer function name).
TOY_FORMATS: dict[str, tuple[str, str]] = {
    "cuhk_sysu": ("cuhk_sysu_writer", "write_cuhk_sysu"),
    "prw": ("prw_writer", "write_prw"),
    "market1501": ("reid_writer", "write_market1501"),
}


def _writer(dataset_format: str) -> Callable[..., dict]:
    if dataset_format not in TOY_FORMATS:
        raise ValueError(f"unknown toy format {dataset_format!r} (known: {sorted(TOY_FORMATS)})")
    module_name, function_name = TOY_FORMATS[dataset_format]
    qualified = f"{__package__}.{module_name}"
    try:
        module = importlib.import_module(qualified)
    except ModuleNotFoundError as e:
        if e.name != qualified:
            raise
        raise ImportError(
            f"toy format {dataset_format!r} needs {qualified}.{function_name}, which is not "
            "installed in this checkout"
        ) from e
    if not hasattr(module, function_name):
        raise ImportError(f"{qualified} has no function {function_name!r}")
    return getattr(module, function_name)


def make_toy_dataset(
    dataset_format: str, out_dir: str, seed: int, *, overwrite: bool = False, **sizes
) -> dict:
    """Generate a toy dataset of ``dataset_format`` into ``out_dir`` atomically.

    Args:
        sizes: size options of the format's writer (e.g. ``num_train_ids``); an option the
            writer does not take raises ``TypeError`` naming the accepted ones.

    Returns:
        the writer's summary dict.
    """
    writer = _writer(dataset_format)
    accepted = [
        name
        for name, p in inspect.signature(writer).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(sizes) - set(accepted))
    if unknown:
        raise TypeError(
            f"toy format {dataset_format!r} does not take {unknown} (it takes: {accepted})"
        )
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        return writer(tmp, seed, **sizes)
