"""PersonSearchCheckpointer: another model's checkpoint, untrusted pickles, missing and truncated
files give errors naming the file; resuming needs an exact match, fine-tuning skips mismatches.
The Trainer loads ImageNet weights (MODEL.BACKBONE.PRETRAINED_FILE) at a fresh start only."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from engine_testutils import REPO_ROOT

from person_search.engine import (
    CheckpointMismatchError,
    PersonSearchCheckpointer,
    PersonSearchTrainer,
    UntrustedCheckpointError,
    load_config,
)
from person_search.modeling.pretrained import PretrainedParts, save_converted

pytestmark = pytest.mark.usefixtures("single_thread")


def _model(config: str, num_ids: int = 4):
    torch.manual_seed(0)
    cfg = load_config(str(REPO_ROOT / "configs" / config))
    cfg.MODEL.OIM.NUM_PERSON_IDS = num_ids
    cfg.MODEL.DEVICE = "cpu"
    return cfg, build_model(cfg)


def _state_copy(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_state_equal(model, state: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def _touch(path: str) -> None:
    """What an unpickled "payload" does: create a file (a stand-in for arbitrary code)."""
    open(path, "w").close()


class _Payload:
    """Unpickles into a call of :func:`_touch`."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


# ------------------------------------------------------------------------ another model
def test_checkpoint_of_another_model_is_rejected_naming_the_file(tmp_path):
    _, hoim = _model("hoim/hoim_toy_cuhk_sysu.yaml")
    PersonSearchCheckpointer(hoim, str(tmp_path)).save("hoim_model")
    path = str(tmp_path / "hoim_model.pth")
    _, oim = _model("oim/oim_toy_cuhk_sysu.yaml")
    before = _state_copy(oim)
    for checkpointables in ([], None):  # loading weights and resuming
        with pytest.raises(CheckpointMismatchError, match="only .* of the model's") as e:
            PersonSearchCheckpointer(oim).load(path, checkpointables=checkpointables)
        assert path in str(e.value) and "PersonSearchRCNN" in str(e.value)
    _assert_state_equal(oim, before)  # nothing was loaded


def test_resume_needs_an_exact_match_fine_tuning_skips_mismatches(tmp_path):
    _, four_ids = _model("oim/oim_toy_cuhk_sysu.yaml", num_ids=4)
    with torch.no_grad():
        four_ids.roi_heads.reid_loss.lut.fill_(0.5)
    PersonSearchCheckpointer(four_ids, str(tmp_path)).save("model_0000009", iteration=9)
    path = str(tmp_path / "model_0000009.pth")
    _, five_ids = _model("oim/oim_toy_cuhk_sysu.yaml", num_ids=5)
    with torch.no_grad():  # differ from the file everywhere
        for v in five_ids.state_dict().values():
            v.add_(1)
    # Resuming (every checkpointable loaded): the LUT of another size is an error.
    with pytest.raises(CheckpointMismatchError, match="resuming needs an exact match") as e:
        PersonSearchCheckpointer(five_ids, str(tmp_path)).resume_or_load(path, resume=True)
    assert path in str(e.value) and "roi_heads.reid_loss.lut" in str(e.value)
    # Fine-tuning (weights only): the LUT keeps its own values, everything else is loaded.
    PersonSearchCheckpointer(five_ids).load(path, checkpointables=[])
    file_state = four_ids.state_dict()
    for k, v in five_ids.state_dict().items():
        if k == "roi_heads.reid_loss.lut":
            assert v.shape == (5, 64) and torch.equal(v, torch.ones(5, 64))
        else:
            assert torch.equal(v, file_state[k]), k


# ---------------------------------------------------------------------- untrusted pickles
def test_untrusted_pth_is_refused_unless_trusted(tmp_path):
    cfg, model = _model("oim/oim_toy_cuhk_sysu.yaml")
    marker = tmp_path / "payload_ran"
    path = str(tmp_path / "with_objects.pth")
    torch.save({"model": model.state_dict(), "note": _Payload(str(marker))}, path)
    with pytest.raises(UntrustedCheckpointError, match="MODEL.WEIGHTS_TRUSTED") as e:
        PersonSearchCheckpointer.from_config(cfg, model).load(path)
    assert path in str(e.value)
    assert not marker.exists()  # refused before anything ran
    cfg.MODEL.WEIGHTS_TRUSTED = True
    PersonSearchCheckpointer.from_config(cfg, model).load(path)
    assert marker.exists()  # trusted: fully unpickled


def test_untrusted_pkl_is_refused_numpy_only_pkl_loads(tmp_path):
    cfg, model = _model("oim/oim_toy_cuhk_sysu.yaml")
    arrays = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    marker = tmp_path / "payload_ran"
    evil = str(tmp_path / "evil.pkl")
    with open(evil, "wb") as f:
        pickle.dump({"model": arrays, "__author__": "someone", "x": _Payload(str(marker))}, f)
    with pytest.raises(UntrustedCheckpointError, match="MODEL.WEIGHTS_TRUSTED") as e:
        PersonSearchCheckpointer.from_config(cfg, model).load(evil)
    assert evil in str(e.value) and not marker.exists()
    # A Detectron2-style .pkl of numpy arrays loads without trust.
    plain = str(tmp_path / "plain.pkl")
    with open(plain, "wb") as f:
        pickle.dump({"model": arrays, "__author__": "someone"}, f)
    _, other = _model("oim/oim_toy_cuhk_sysu.yaml")
    with torch.no_grad():
        for v in other.state_dict().values():
            v.add_(1)
    PersonSearchCheckpointer.from_config(cfg, other).load(plain)
    for k, v in other.state_dict().items():
        assert np.array_equal(v.numpy(), arrays[k]), k


# ------------------------------------------------------------------ missing, truncated
def test_missing_file_error_names_the_path(tmp_path):
    cfg, model = _model("oim/oim_toy_cuhk_sysu.yaml")
    missing = str(tmp_path / "nowhere" / "model_final.pth")
    with pytest.raises(FileNotFoundError, match="nowhere/model_final.pth"):
        PersonSearchCheckpointer.from_config(cfg, model).resume_or_load(missing, resume=False)
    # A last_checkpoint tag naming a file that is gone.
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    with pytest.raises(FileNotFoundError, match="model_0000099.pth"):
        PersonSearchCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)


def test_truncated_file_error_names_it(tmp_path):
    _, model = _model("oim/oim_toy_cuhk_sysu.yaml")
    PersonSearchCheckpointer(model, str(tmp_path)).save("whole")
    data = (tmp_path / "whole.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="not a readable PyTorch checkpoint") as e:
        PersonSearchCheckpointer(model).load(str(cut))
    assert str(cut) in str(e.value)


def test_bad_matched_fraction_names_the_key():
    with pytest.raises(ValueError, match="MODEL.WEIGHTS_MIN_MATCHED_FRACTION"):
        PersonSearchCheckpointer(torch.nn.Linear(2, 2), min_matched_fraction=1.5)


# ------------------------------------------------------------------- ImageNet weights
def _trunk_and_head(model) -> dict[str, torch.Tensor]:
    state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    state.update({f"roi_heads.res5.{k}": v for k, v in model.roi_heads.res5.state_dict().items()})
    return {k: v.clone() for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_trainer_loads_imagenet_weights_at_a_fresh_start_only(tiny_cfg, tmp_path):
    torch.manual_seed(1)
    source = _trunk_and_head(build_model(tiny_cfg))
    path = str(tmp_path / "imagenet_converted.pth")
    save_converted(
        PretrainedParts(
            trunk={
                k[len("backbone.") :]: v for k, v in source.items() if k.startswith("backbone.")
            },
            head_stage={
                k[len("roi_heads.res5.") :]: v for k, v in source.items() if k.startswith("roi_")
            },
        ),
        path,
    )
    tiny_cfg.MODEL.BACKBONE.PRETRAINED_FILE = path
    tiny_cfg.MODEL.BACKBONE.PRETRAINED_FORMAT = "converted"
    trainer = PersonSearchTrainer(tiny_cfg)
    assert _trunk_and_head(trainer.model).keys() == source.keys()
    assert not torch.equal(
        trainer.model.backbone.stem.conv1.weight, source["backbone.stem.conv1.weight"]
    )
    trainer.resume_or_load(resume=True)  # no checkpoint in OUTPUT_DIR: a fresh start
    for k, v in _trunk_and_head(trainer.model).items():
        assert torch.equal(v, source[k]), k
    # Resuming from a checkpoint does not read the file (gone by now).
    trainer.iter = 4
    trainer.checkpointer.save("model_0000004", iteration=4)
    os.remove(path)
    resumed = PersonSearchTrainer(tiny_cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 5
    # A fresh start needs it: the error names it.
    tiny_cfg.OUTPUT_DIR = str(tmp_path / "fresh")
    with pytest.raises(FileNotFoundError, match="imagenet_converted.pth"):
        PersonSearchTrainer(tiny_cfg).resume_or_load(resume=True)
