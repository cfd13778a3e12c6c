"""The training engine shared by person search and re-id (``cfg.TASK``).

:class:`Trainer` is Detectron2's ``DefaultTrainer`` with the library's data loaders and
evaluators, SGD/Adam/AdamW, and checkpoints that make ``--resume`` exact. Detectron2 v0.6 saves
only the iteration and hook states and restarts the data stream, so a resumed run differs from
an uninterrupted one. Here a checkpoint also holds the inner trainer's state (optimizer, AMP
grad scaler), the seed of the training index stream and, in single-process runs, the random
number generator states (Python, numpy, torch, CUDA); on resume the person-search loader
continues the stream at the checkpoint's iteration.

A person-search run resumed from a checkpoint then ends with the weights of the uninterrupted
run, bit for bit, when: one process, ``DATALOADER.NUM_WORKERS: 0`` (workers restart their
augmentation RNG), aspect-ratio grouping holds no image back (see
:func:`~person_search.data.build.build_person_search_train_loader`) and the kernels are
deterministic (CPU; on CUDA some are not). Otherwise it still continues at the same iteration,
learning-rate schedule, optimizer state and data position. Re-id runs restart their P x K
stream (a warning says so).
"""

from __future__ import annotations

import logging
import os
import random
import weakref

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..modeling.pretrained import load_pretrained_backbone
from .checkpoint import PersonSearchCheckpointer
from .optimizer import build_optimizer

__all__ = ["TASKS", "Trainer"]

logger = logging.getLogger(__name__)

# Supported values of cfg.TASK.
TASKS = ("person_search", "reid")


def _check_task(cfg) -> str:
    if cfg.TASK not in TASKS:
        raise ValueError(f"TASK={cfg.TASK!r} is not one of {TASKS}")
    return cfg.TASK


def _rng_state() -> dict:
    python_state = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` for every task of the library.

    * data: ``cfg.TASK`` "person_search" -> :mod:`person_search.data` scene loaders,
      "reid" -> re-id loaders;
    * evaluation: by the test dataset's ``evaluator_type`` ("person_search" or "reid");
    * optimizer: ``SOLVER.OPTIMIZER`` (SGD, Adam, AdamW); schedules from Detectron2
      (``SOLVER.LR_SCHEDULER_NAME``); AMP with ``SOLVER.AMP.ENABLED`` (CUDA only);
    * checkpoints: :class:`PersonSearchCheckpointer`, with optimizer, grad-scaler, data-stream
      and RNG state (see the module docstring);
    * initial weights (:meth:`resume_or_load`): ``MODEL.BACKBONE.PRETRAINED_FILE``, then
      ``MODEL.WEIGHTS``; with ``--resume``, the last checkpoint of ``OUTPUT_DIR``.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        _check_task(cfg)
        if cfg.SOLVER.SCHEDULE_UNIT != "iter":
            raise ValueError(
                f"SOLVER.SCHEDULE_UNIT={cfg.SOLVER.SCHEDULE_UNIT!r}: convert the schedule with "
                "person_search.engine.resolve_schedule(cfg) (setup() does) before training"
            )
        if cfg.SOLVER.AMP.ENABLED and not torch.cuda.is_available():
            raise ValueError("SOLVER.AMP.ENABLED needs a CUDA device (Detectron2's AMPTrainer)")
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        # Seed of the training index stream, saved in checkpoints so that a resumed run
        # continues the same stream. Person search draws it where Detectron2's TrainingSampler
        # does; re-id takes SEED when set (>= 0), else draws it the same way.
        if cfg.TASK == "reid" and cfg.SEED >= 0:
            self._data_seed = int(cfg.SEED)
        else:
            self._data_seed = int(comm.shared_random_seed())
        self._rng_to_restore: dict | None = None
        data_loader = self.build_train_loader(cfg, seed=self._data_seed)
        model = create_ddp_model(model, broadcast_buffers=False)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = PersonSearchCheckpointer.from_config(
            cfg, model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Iteration and hook states (Detectron2), plus the optimizer / grad scaler
        (``"_trainer"``), the data stream's seed (``"data_seed"``) and, in
        single-process runs, the RNG states (``"rng"``)."""
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        ret["data_seed"] = self._data_seed
        if comm.get_world_size() == 1:
            ret["rng"] = _rng_state()
        return ret

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict`; the RNG states are applied by :meth:`resume_or_load`
        after the data loader is rebuilt, so that nothing drawn meanwhile shifts them."""
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning(
                "The checkpoint holds no optimizer state (written by Detectron2's own "
                "DefaultTrainer?): the optimizer restarts from scratch."
            )
        if "data_seed" in state_dict:
            self._data_seed = int(state_dict["data_seed"])
        if "rng" in state_dict and comm.get_world_size() == 1:
            self._rng_to_restore = state_dict["rng"]

    def resume_or_load(self, resume: bool = True) -> None:
        """Detectron2's: with ``resume`` and a checkpoint in ``OUTPUT_DIR``, load everything and
        continue after its iteration (the training data stream and the RNG states too);
        otherwise start at iteration 0 from the ImageNet weights of
        ``MODEL.BACKBONE.PRETRAINED_FILE`` (trunk and RoI head stages, when set), then
        ``MODEL.WEIGHTS`` (when set) over them."""
        self._rng_to_restore = None
        if not (resume and self.checkpointer.has_checkpoint()):
            model = self.model
            if isinstance(model, DistributedDataParallel):
                model = model.module
            if load_pretrained_backbone(model, self.cfg):
                logger.info(
                    f"Loaded ImageNet weights {self.cfg.MODEL.BACKBONE.PRETRAINED_FILE} into the "
                    "trunk and the RoI head stage(s)"
                )
        super().resume_or_load(resume=resume)
        if self.start_iter > 0:
            self._continue_data_stream()
        if self._rng_to_restore is not None:
            _set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def _continue_data_stream(self) -> None:
        """Replace the training loader by one starting at ``self.start_iter``."""
        loader = self.build_train_loader(self.cfg, seed=self._data_seed, start_iter=self.start_iter)
        self._trainer.data_loader = loader
        self._trainer._data_loader_iter = iter(loader)
        logger.info(f"Training data stream continued at iteration {self.start_iter}")

    # ------------------------------------------------------------- builders
    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg, *, seed: int | None = None, start_iter: int = 0):
        """The task's infinite training loader.

        Args:
            seed: seed of the index stream (None: person search, Detectron2's shared random
                seed; re-id, ``SEED`` when >= 0, else that shared seed).
            start_iter: first iteration served (see
                :func:`~person_search.data.build.build_person_search_train_loader` and
                :func:`~person_search.data.reid_build.build_reid_train_loader`).
        """
        if _check_task(cfg) == "person_search":
            from person_search.data import build_person_search_train_loader

            return build_person_search_train_loader(cfg, seed=seed, start_iter=start_iter)
        from person_search.data import build_reid_train_loader

        return build_reid_train_loader(cfg, seed=seed, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        if _check_task(cfg) == "person_search":
            from person_search.data import build_person_search_test_loader

            return build_person_search_test_loader(cfg, dataset_name)
        from person_search.data import build_reid_test_loader

        return build_reid_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_dir: str | None = None):
        """The evaluator named by ``MetadataCatalog.get(dataset_name).evaluator_type``."""
        if output_dir is None:
            output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type == "person_search":
            from person_search.evaluation import PersonSearchEvaluator

            return PersonSearchEvaluator(cfg, dataset_name, output_dir)
        if evaluator_type == "reid":
            from person_search.evaluation import ReIDEvaluator

            return ReIDEvaluator(cfg, dataset_name)
        raise ValueError(
            f"dataset {dataset_name!r} has evaluator_type={evaluator_type!r} in its metadata; "
            "the Trainer evaluates 'person_search' and 'reid' datasets"
        )
