"""The model applied to footage (person_search.footage.model): the evaluation's pipeline, the
fingerprint, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from footage_testutils import OIM_TOY_CONFIG, TINY_OVERRIDES, tiny_cfg

from person_search.data.build import build_person_search_mapper
from person_search.engine import CheckpointMismatchError, load_config
from person_search.footage import FootageModel, ModelFingerprint, ModelMismatchError
from person_search.footage.model import config_sha256, state_dict_sha256, with_identity_count


@pytest.fixture
def toy_test_dicts(tiny_cuhk_root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", tiny_cuhk_root)
    return DatasetCatalog.get("toy_cuhk_sysu_test")


def test_frames_and_queries_go_through_the_evaluation_pipeline(
    trained_model, toy_test_dicts, single_thread
):
    """detect / embed_query give what the test mapper + model give the evaluator."""
    model = trained_model
    mapper = build_person_search_mapper(model.cfg, False)
    gallery = next(d for d in toy_test_dicts if "query_index" not in d)
    query = next(d for d in toy_test_dicts if "query_index" in d)
    with torch.no_grad():
        (expected,) = model.model.inference([mapper(gallery)])
        (expected_query,) = model.model.inference([mapper(query)])
    expected = expected["instances"]
    assert len(expected) >= 2
    keep = expected.scores >= expected.scores.median()
    assert 0 < keep.sum() < len(keep)
    threshold = float(expected.scores.median())

    image = utils.read_image(gallery["file_name"], format=model.image_format)
    inputs, _ = model.to_input(image)
    (got,) = model.detect([inputs], score_thresh=threshold)
    np.testing.assert_array_equal(got.boxes, expected.pred_boxes.tensor[keep].numpy())
    np.testing.assert_array_equal(got.scores, expected.scores[keep].numpy())
    emb = torch.nn.functional.normalize(expected.embeddings[keep], dim=1).numpy()
    np.testing.assert_allclose(got.embeddings, emb, rtol=0, atol=1e-6)

    image = utils.read_image(query["file_name"], format=model.image_format)
    got_query = model.embed_query(image, query["query_box"])
    ref = torch.nn.functional.normalize(expected_query["query_embeddings"].reshape(-1), dim=0)
    np.testing.assert_allclose(got_query, ref.numpy(), rtol=0, atol=1e-6)
    assert abs(np.linalg.norm(got_query) - 1) < 1e-5


def test_fingerprint_covers_weights_and_model_config_only(untrained_weights, tmp_path):
    cfg = tiny_cfg(untrained_weights)
    base = config_sha256(cfg)
    assert config_sha256(tiny_cfg("/elsewhere/model.pth", "MODEL.DEVICE", "cuda")) == base
    assert config_sha256(tiny_cfg(untrained_weights, "INPUT.MIN_SIZE_TEST", "300")) != base
    nms = tiny_cfg(untrained_weights, "MODEL.ROI_HEADS.NMS_THRESH_TEST", "0.3")
    assert config_sha256(nms) != base
    assert config_sha256(tiny_cfg(untrained_weights, "SOLVER.BASE_LR", "0.1")) == base
    # A YAML round trip (how an index records its config) keeps the hash.
    path = tmp_path / "config.yaml"
    path.write_text(cfg.dump())
    assert config_sha256(load_config(str(path))) == base

    state = torch.load(untrained_weights, weights_only=True)["model"]
    digest = state_dict_sha256(state)
    assert state_dict_sha256(dict(reversed(list(state.items())))) == digest
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] += 1e-3
    assert state_dict_sha256(state) != digest


def test_mismatch_names_both_models():
    a = ModelFingerprint("/runs/a/model_final.pth", "1" * 64, "2" * 64)
    a.check_same(ModelFingerprint("/moved/a.pth", "1" * 64, "2" * 64), "index X")  # same
    with pytest.raises(
        ModelMismatchError, match=r"index X was built with another model \(weights differ\)"
    ) as e:
        a.check_same(ModelFingerprint("/runs/b/model_final.pth", "3" * 64, "2" * 64), "index X")
    assert "/runs/a/model_final.pth" in str(e.value) and "/runs/b/model_final.pth" in str(e.value)
    with pytest.raises(ModelMismatchError, match=r"\(model/input config differ\)"):
        a.check_same(ModelFingerprint("/runs/a/model_final.pth", "1" * 64, "4" * 64), "index X")
    assert ModelFingerprint.from_dict(a.to_dict()) == a


def test_identity_count_is_recorded_from_the_training_set(tiny_cuhk_root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", tiny_cuhk_root)
    overrides = [*TINY_OVERRIDES, "MODEL.OIM.NUM_PERSON_IDS", "0"]
    cfg = load_config(str(OIM_TOY_CONFIG), overrides)
    assert with_identity_count(cfg).MODEL.OIM.NUM_PERSON_IDS == 4  # the tiny set's train ids
    assert cfg.MODEL.OIM.NUM_PERSON_IDS == 0  # not modified


def test_bad_models_are_errors(untrained_weights, tmp_path):
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        FootageModel.load(tiny_cfg(""))
    with pytest.raises(ValueError, match="needs a person-search model, .* TASK='reid'"):
        FootageModel.load(tiny_cfg(untrained_weights, "TASK", "reid"))
    other = tmp_path / "other.pth"
    torch.save({"model": {"backbone.weight": torch.zeros(3)}}, other)
    with pytest.raises(CheckpointMismatchError, match="other.pth: does not hold weights"):
        FootageModel.load(tiny_cfg(str(other)))
