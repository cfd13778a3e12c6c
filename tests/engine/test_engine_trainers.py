"""One trainer per task and Detectron2's builder contract: ``get_trainer_class``, the base
``Trainer`` without loaders, and an overriding ``build_train_loader(cls, cfg)`` that receives
the data stream's position (seed, start iteration) through the config, also on resume."""

from __future__ import annotations

import pytest

from person_search.config import get_cfg
from person_search.data import build_person_search_train_loader
from person_search.engine import (
    TASKS,
    PersonSearchTrainer,
    ReIDTrainer,
    Trainer,
    count_training_images,
    get_trainer_class,
)


def test_trainer_class_of_each_task():
    cfg = get_cfg()
    assert TASKS == ("person_search", "reid")
    assert get_trainer_class(cfg) is PersonSearchTrainer
    cfg.TASK = "reid"
    assert get_trainer_class(cfg) is ReIDTrainer
    cfg.TASK = "detection"
    with pytest.raises(ValueError, match="TASK='detection' is not one of"):
        get_trainer_class(cfg)
    with pytest.raises(NotImplementedError, match="get_trainer_class"):
        Trainer.build_train_loader(cfg)
    with pytest.raises(NotImplementedError, match="get_trainer_class"):
        Trainer.build_test_loader(cfg, "toy_prw_test")


def test_data_stream_seed_per_task():
    cfg = get_cfg()
    cfg.SEED = 3
    assert ReIDTrainer.data_stream_seed(cfg) == 3  # re-id: SEED when set
    cfg.DATALOADER.SEED = 11
    assert ReIDTrainer.data_stream_seed(cfg) == PersonSearchTrainer.data_stream_seed(cfg) == 11


class _RecordingTrainer(PersonSearchTrainer):
    calls: list[tuple[int, int]] = []

    @classmethod
    def build_train_loader(cls, cfg):
        cls.calls.append((cfg.DATALOADER.SEED, cfg.DATALOADER.START_ITER))
        return build_person_search_train_loader(cfg)


@pytest.mark.usefixtures("single_thread")
def test_overridden_train_loader_gets_the_stream_position_on_resume(tiny_cfg):
    assert count_training_images(tiny_cfg) == 6  # the person-search trainer's count
    tiny_cfg.SOLVER.MAX_ITER = 2
    tiny_cfg.SOLVER.CHECKPOINT_PERIOD = 1
    _RecordingTrainer.calls.clear()
    first = _RecordingTrainer(tiny_cfg)
    first.resume_or_load(resume=False)
    first.train()
    seed = first._data_seed
    assert _RecordingTrainer.calls == [(seed, 0)]
    tiny_cfg.SOLVER.MAX_ITER = 3
    resumed = _RecordingTrainer(tiny_cfg)  # draws another seed; the checkpoint's wins
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    assert _RecordingTrainer.calls[-1] == (seed, 2)
