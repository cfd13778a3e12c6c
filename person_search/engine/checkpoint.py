"""Checkpointing: safe loading of weights files, atomic saving, wrong-model detection.

:class:`PersonSearchCheckpointer` is Detectron2's ``DetectionCheckpointer`` with:

* **Safe loading.** ``.pth`` files are read with ``torch.load(weights_only=True)`` (tensors,
  numbers, strings, containers, numpy arrays; never arbitrary objects); Detectron2/Caffe2
  ``.pkl`` files with an unpickler that only rebuilds numpy arrays. A file that needs more is
  refused with an error naming it and the way to mark it trusted
  (``MODEL.WEIGHTS_TRUSTED: True`` loads it with full unpickling).
* **Wrong-model detection** (Detectron2 only warns). Rule: let ``n`` be the number of
  entries of the model's state dict and ``m`` the number found in the file under the same
  name (after Detectron2's name matching for ``.pkl`` files) with the same shape. Loading
  fails, naming the file, when ``m < min_matched_fraction * n`` (``MODEL.
  WEIGHTS_MIN_MATCHED_FRACTION``, 0.5), and, when resuming a training run (all
  checkpointables loaded), as soon as any entry is missing, unexpected or of another shape.
  Fine-tuning from a compatible file still skips mismatched entries with a warning (e.g. an
  OIM lookup table sized for another dataset).
* **Atomic saving.** The checkpoint is written to a temporary file and renamed; the
  ``last_checkpoint`` tag is written the same way after it, so a save killed at any point never
  leaves a truncated file named as the last checkpoint.
* **Missing files** raise ``FileNotFoundError`` naming the path.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from fvcore.common.checkpoint import _strip_prefix_if_present

from ..utils.file_io import atomic_write

__all__ = [
    "CheckpointMismatchError",
    "PersonSearchCheckpointer",
    "UntrustedCheckpointError",
    "atomic_write",
]

logger = logging.getLogger(__name__)

_TRUST_HINT = (
    "If you trust this file, set MODEL.WEIGHTS_TRUSTED True (config) to load it with full "
    "unpickling (torch.load(weights_only=False)); never do so for a file of unknown origin."
)
# Mismatched entries listed in an error message.
_MAX_KEYS_SHOWN = 5


class UntrustedCheckpointError(RuntimeError):
    """A weights file needs unpickling of objects other than tensors and numpy arrays."""


class CheckpointMismatchError(RuntimeError):
    """A weights file does not hold weights of the model being loaded."""


def _numpy_safe_globals() -> list:
    """Globals that (un)pickling numpy arrays needs: array rebuild, dtype and scalar types."""
    multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray
    dtype_types = {type(np.dtype(t)) for t in np.sctypeDict.values()}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_types]


_NUMPY_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only numpy arrays, dtypes and builtin containers."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_PICKLE_GLOBALS or (
            module == "numpy.dtypes" and name.endswith("DType")
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


class PersonSearchCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with safe loading, wrong-model errors and atomic saves."""

    def __init__(
        self,
        model: torch.nn.Module,
        save_dir: str = "",
        *,
        trusted: bool = False,
        min_matched_fraction: float = 0.5,
        save_to_disk: bool | None = None,
        **checkpointables: Any,
    ):
        """
        Args:
            model, save_dir, save_to_disk, checkpointables: as ``DetectionCheckpointer``.
            trusted: load files with full unpickling (``MODEL.WEIGHTS_TRUSTED``).
            min_matched_fraction: see the module docstring
                (``MODEL.WEIGHTS_MIN_MATCHED_FRACTION``).
        """
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        if not 0.0 <= min_matched_fraction <= 1.0:
            raise ValueError(
                f"MODEL.WEIGHTS_MIN_MATCHED_FRACTION must be in [0, 1], got {min_matched_fraction}"
            )
        self.trusted = trusted
        self.min_matched_fraction = min_matched_fraction
        self._loading_path = ""
        self._resuming = False

    @classmethod
    def from_config(cls, cfg, model: torch.nn.Module, save_dir: str = "", **checkpointables):
        """Build with the weight-loading keys of ``cfg``."""
        return cls(
            model,
            save_dir,
            trusted=cfg.MODEL.WEIGHTS_TRUSTED,
            min_matched_fraction=cfg.MODEL.WEIGHTS_MIN_MATCHED_FRACTION,
            **checkpointables,
        )

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        """Load ``path`` (all checkpointables when ``checkpointables`` is None: a resume)."""
        if path:
            local = path if os.path.isfile(path) else self._local_path(path)
            if not os.path.isfile(local):
                raise FileNotFoundError(f"weights file not found: {path!r}")
            path = local
        self._loading_path = path
        self._resuming = checkpointables is None
        try:
            return super().load(path, checkpointables)
        finally:
            self._loading_path = ""
            self._resuming = False

    def _local_path(self, path: str) -> str:
        try:
            return self.path_manager.get_local_path(path)
        except Exception as e:  # an unknown URL scheme, no network ...
            raise FileNotFoundError(f"weights file not found: {path!r} ({e})") from e

    def _load_file(self, filename: str) -> dict[str, Any]:
        if filename.endswith(".pkl"):
            return self._load_pkl(filename)
        try:
            loaded = self._torch_load(filename)
        except pickle.UnpicklingError as e:
            raise UntrustedCheckpointError(
                f"{filename}: refused by weights-only loading, it holds Python objects other "
                f"than tensors ({str(e).splitlines()[0]}). {_TRUST_HINT}"
            ) from e
        except (RuntimeError, EOFError) as e:
            raise RuntimeError(f"{filename}: not a readable PyTorch checkpoint ({e})") from e
        if filename.endswith(".pyth"):
            if "model_state" not in loaded:
                raise KeyError(f"{filename}: pycls checkpoints must contain 'model_state'")
            model_state = {
                k: v
                for k, v in loaded["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            return {"model": model_state, "__author__": "pycls", "matching_heuristics": True}
        if not isinstance(loaded, dict):
            raise TypeError(f"{filename}: expected a dict of weights, got {type(loaded).__name__}")
        if "model" not in loaded:
            loaded = {"model": loaded}
        return loaded

    def _torch_load(self, filename: str):
        if self.trusted:
            return torch.load(filename, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(filename, map_location="cpu", weights_only=True)

    def _load_pkl(self, filename: str) -> dict[str, Any]:
        with self.path_manager.open(filename, "rb") as f:
            try:
                if self.trusted:
                    data = pickle.load(f, encoding="latin1")
                else:
                    data = _NumpyOnlyUnpickler(f, encoding="latin1").load()
            except pickle.UnpicklingError as e:
                raise UntrustedCheckpointError(
                    f"{filename}: refused by the numpy-only unpickler ({e}). {_TRUST_HINT}"
                ) from e
        if not isinstance(data, dict):
            raise TypeError(f"{filename}: expected a dict of weights, got {type(data).__name__}")
        if "model" in data and "__author__" in data:
            return data  # Detectron2 model zoo format
        if "blobs" in data:  # Caffe2 detection models; ImageNet models have no "blobs"
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _load_model(self, checkpoint: dict[str, Any]):
        if checkpoint.get("matching_heuristics", False):
            self._convert_ndarray_to_tensor(checkpoint["model"])
            checkpoint["model"] = align_and_update_state_dicts(
                self.model.state_dict(),
                checkpoint["model"],
                c2_conversion=checkpoint.get("__author__") == "Caffe2",
            )
            checkpoint["matching_heuristics"] = False
        self._convert_ndarray_to_tensor(checkpoint["model"])
        _strip_prefix_if_present(checkpoint["model"], "module.")
        self._check_compatible(checkpoint["model"])
        return super()._load_model(checkpoint)

    def _check_compatible(self, weights: dict[str, torch.Tensor]) -> None:
        """Raise :class:`CheckpointMismatchError` by the rule of the module docstring."""
        model_state = self.model.state_dict()
        matched, wrong_shape, missing = [], [], []
        for k, v in model_state.items():
            if k not in weights:
                missing.append(k)
            elif tuple(weights[k].shape) != tuple(v.shape):
                wrong_shape.append(f"{k}: {tuple(weights[k].shape)} in file, {tuple(v.shape)}")
            else:
                matched.append(k)
        unexpected = [k for k in weights if k not in model_state]
        n = len(model_state)
        too_few = len(matched) < self.min_matched_fraction * n
        inexact = self._resuming and (wrong_shape or missing or unexpected)
        if not (too_few or inexact):
            return
        if too_few:
            reason = (
                f"only {len(matched)} of the model's {n} tensors are in it with the right shape "
                f"(MODEL.WEIGHTS_MIN_MATCHED_FRACTION={self.min_matched_fraction})"
            )
        else:
            reason = "resuming needs an exact match of every tensor"
        details = [
            f"{len(wrong_shape)} of another shape (e.g. {wrong_shape[:_MAX_KEYS_SHOWN]})",
            f"{len(missing)} missing (e.g. {missing[:_MAX_KEYS_SHOWN]})",
            f"{len(unexpected)} unexpected (e.g. {unexpected[:_MAX_KEYS_SHOWN]})",
        ]
        raise CheckpointMismatchError(
            f"{self._loading_path or 'checkpoint'}: does not hold weights of this "
            f"{type(self.model).__name__}: {reason}; " + "; ".join(details)
        )

    # ------------------------------------------------------------------- saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically, then tag it as the last checkpoint."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f), mode="wb")
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically write ``last_checkpoint`` naming ``last_filename_basename``."""
        tag = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(tag, lambda f: f.write(last_filename_basename), mode="w")
