"""A trained person-search model applied to footage: detect + embed frames, embed query boxes.

Frames are resized by the augmentations of the config's person-search *test* mapper
(``build_person_search_mapper(cfg, False)``: the resizing evaluation uses) and go through
:meth:`PersonSearchRCNN.inference`: scene images give detections (boxes in original pixels,
scores, embeddings), a query image with ``query_boxes`` gives the query embedding, exactly as
the :class:`~person_search.evaluation.PersonSearchEvaluator` receives them.

A :class:`ModelFingerprint` identifies the model: a SHA-256 of its loaded weights and one of the
config that shapes its embeddings (``MODEL`` and ``INPUT``, minus where and how the weights
file is loaded). An index records it; querying the index with another model is an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes

from person_search.data.build import build_person_search_mapper
from person_search.engine import PersonSearchCheckpointer
from person_search.modeling.roi_heads.oim_roi_heads import resolve_num_person_ids

__all__ = ["Detections", "FootageModel", "ModelFingerprint", "ModelMismatchError"]

# Config keys that say where / how the weights file is read or where the model runs, not what
# the model computes: left out of the config fingerprint.
_NOT_FINGERPRINTED = ("WEIGHTS", "WEIGHTS_TRUSTED", "WEIGHTS_MIN_MATCHED_FRACTION", "DEVICE")


class ModelMismatchError(ValueError):
    """An index is queried with a model other than the one that built it."""


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies a model's embeddings.

    Attributes:
        weights: ``MODEL.WEIGHTS`` as given (informative only).
        weights_sha256: SHA-256 of the loaded state dict (names, dtypes, shapes, values).
        config_sha256: SHA-256 of the ``MODEL`` and ``INPUT`` config nodes, without
            ``MODEL.WEIGHTS*`` and ``MODEL.DEVICE``.
    """

    weights: str
    weights_sha256: str
    config_sha256: str

    @classmethod
    def of(cls, cfg: CfgNode, model: torch.nn.Module) -> ModelFingerprint:
        return cls(
            weights=str(cfg.MODEL.WEIGHTS),
            weights_sha256=state_dict_sha256(model.state_dict()),
            config_sha256=config_sha256(cfg),
        )

    def describe(self) -> str:
        return (
            f"weights {self.weights!r} (sha256 {self.weights_sha256[:16]}...), model/input "
            f"config sha256 {self.config_sha256[:16]}..."
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelFingerprint:
        return cls(str(d["weights"]), str(d["weights_sha256"]), str(d["config_sha256"]))

    def check_same(self, other: ModelFingerprint, what: str) -> None:
        """Raise :class:`ModelMismatchError` naming both models unless ``other`` computes the
        same embeddings (same weights and config hashes; the weights path may differ).

        Args:
            what: the thing built with ``self``, for the message (e.g. "index /data/idx").
        """
        if (self.weights_sha256, self.config_sha256) == (
            other.weights_sha256,
            other.config_sha256,
        ):
            return
        differs = [
            name
            for name, a, b in (
                ("weights", self.weights_sha256, other.weights_sha256),
                ("model/input config", self.config_sha256, other.config_sha256),
            )
            if a != b
        ]
        raise ModelMismatchError(
            f"{what} was built with another model ({' and '.join(differs)} differ): it was built "
            f"with {self.describe()}; the model given is {other.describe()}. Query it with the "
            "model (weights and config) that built it."
        )


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: every entry's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _plain(value):
    """Config values as JSON-able data, sequences as lists (a YAML round trip turns nested
    tuples into lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_sha256(cfg: CfgNode) -> str:
    """SHA-256 of the ``MODEL`` and ``INPUT`` nodes, see :class:`ModelFingerprint`."""
    model = {k: v for k, v in cfg.MODEL.items() if k not in _NOT_FINGERPRINTED}
    text = json.dumps(_plain({"MODEL": model, "INPUT": cfg.INPUT}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def with_identity_count(cfg: CfgNode) -> CfgNode:
    """``cfg`` with ``MODEL.OIM.NUM_PERSON_IDS`` resolved when it is 0 ("count the identities
    of DATASETS.TRAIN"), so that a config recorded with an index rebuilds the model without the
    training set. Call it after building the model (which reads the count once)."""
    if cfg.MODEL.OIM.NUM_PERSON_IDS > 0 or not cfg.DATASETS.TRAIN:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.OIM.NUM_PERSON_IDS = resolve_num_person_ids(cfg)
    cfg.freeze()
    return cfg


@dataclass
class Detections:
    """Detections of one frame, above the score threshold.

    Attributes:
        boxes: (M, 4) float32 XYXY in original frame pixels.
        scores: (M,) float32.
        embeddings: (M, D) float32, L2-normalised.
    """

    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


class FootageModel:
    """A person-search model in eval mode plus the test mapper's resizing.

    Build it with :meth:`load` (from a config with ``MODEL.WEIGHTS``), or around a model
    already holding its weights.
    """

    def __init__(self, cfg: CfgNode, model: torch.nn.Module):
        """
        Args:
            cfg: the model's config (``TASK`` "person_search").
            model: a person-search meta architecture (``inference`` giving ``instances`` with
                ``embeddings`` and ``query_embeddings``, and ``embed_boxes``).
        """
        if cfg.TASK != "person_search":
            raise ValueError(
                f"footage search needs a person-search model, the config has TASK={cfg.TASK!r}"
            )
        if not (hasattr(model, "inference") and hasattr(model, "embed_boxes")):
            raise TypeError(
                f"{type(model).__name__} is not a person-search meta architecture (no "
                "inference/embed_boxes); MODEL.META_ARCHITECTURE=PersonSearchRCNN or a subclass"
            )
        mapper = build_person_search_mapper(cfg, False)
        augmentations = getattr(mapper, "augmentations", None)
        image_format = getattr(mapper, "image_format", None)
        if not isinstance(augmentations, T.AugmentationList) or not image_format:
            raise TypeError(
                f"INPUT.PERSON_SEARCH_MAPPER={cfg.INPUT.PERSON_SEARCH_MAPPER!r}: its mapper has "
                "no 'augmentations' (AugmentationList) and 'image_format': footage search "
                "resizes frames with them, as the test loader does"
            )
        self.cfg = with_identity_count(cfg)  # recorded with indexes
        self.model = model.eval()
        self.augmentations = augmentations
        self.image_format: str = image_format
        self.fingerprint = ModelFingerprint.of(self.cfg, model)

    @classmethod
    def load(cls, cfg: CfgNode) -> FootageModel:
        """Build the model of ``cfg`` and load ``MODEL.WEIGHTS`` (required: an index of an
        untrained model could never be queried again)."""
        if not cfg.MODEL.WEIGHTS:
            raise ValueError(
                "MODEL.WEIGHTS is empty: footage search needs a trained model's weights file"
            )
        model = build_model(cfg)
        PersonSearchCheckpointer.from_config(cfg, model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
        return cls(cfg, model)

    def to_input(self, image: np.ndarray) -> tuple[dict, T.Transform]:
        """The model input of one (H, W, C) uint8 frame in ``image_format``: ``image`` (C, H',
        W') resized as the test mapper resizes, ``height``/``width`` the original size; and the
        transform applied."""
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return {"image": tensor, "height": image.shape[0], "width": image.shape[1]}, transforms

    @torch.no_grad()
    def detect(self, inputs: list[dict], score_thresh: float) -> list[Detections]:
        """Detect and embed persons in a batch of :meth:`to_input` dicts; keep ``score >=
        score_thresh``."""
        outputs = self.model.inference(inputs)
        result = []
        for out in outputs:
            inst = out["instances"].to("cpu")
            keep = inst.scores >= score_thresh
            result.append(
                Detections(
                    boxes=inst.pred_boxes.tensor[keep].float().numpy(),
                    scores=inst.scores[keep].float().numpy(),
                    embeddings=_l2_normalize(inst.embeddings[keep]).numpy(),
                )
            )
        return result

    @torch.no_grad()
    def embed_query(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(D,) float32 L2-normalised embedding of ``box`` (XYXY, original pixels) in ``image``
        ((H, W, C) uint8 in ``image_format``), computed as the evaluator's queries are."""
        inputs, transforms = self.to_input(image)
        boxes = transforms.apply_box(np.asarray(box, dtype=np.float64).reshape(1, 4))
        inputs["query_boxes"] = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
        (out,) = self.model.inference([inputs])
        return _l2_normalize(out["query_embeddings"].reshape(-1)).cpu().numpy()
