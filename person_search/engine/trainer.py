"""The training engine shared by person search and re-id: :class:`Trainer`.

:class:`Trainer` is Detectron2's ``DefaultTrainer`` with SGD/Adam/AdamW, evaluators chosen by
the test dataset, ImageNet weights at a fresh start, and checkpoints that make ``--resume``
exact. It keeps Detectron2's contract: a project overrides ``build_model(cls, cfg)``,
``build_train_loader(cls, cfg)``, ``build_test_loader(cls, cfg, dataset_name)``,
``build_evaluator(cls, cfg, dataset_name, output_folder=None)``, ``build_optimizer``,
``build_lr_scheduler`` and ``build_hooks`` exactly as in Detectron2's projects. The task's
data loaders are those of its subclass, one per task (:mod:`.trainers`:
``PersonSearchTrainer``, ``ReIDTrainer``).

Detectron2 v0.6 saves only the iteration and hook states and restarts the data stream, so a
resumed run differs from an uninterrupted one. Here a checkpoint also holds the inner
trainer's state (optimizer, AMP grad scaler), the seed of the training index stream and, in
single-process runs, the random number generator states (Python, numpy, torch, CUDA). The
stream's position reaches the loader through the config it is built with:
``DATALOADER.SEED`` (the seed, fixed by the Trainer before the first loader is built) and
``DATALOADER.START_ITER`` (the first iteration served: the checkpoint's on resume), so an
overriding ``build_train_loader(cls, cfg)`` that calls the library's loader builders resumes
exactly too.

A run resumed from a checkpoint then ends with the weights of the uninterrupted run, bit for
bit, when: one process, ``DATALOADER.NUM_WORKERS: 0`` (workers restart their augmentation
RNG), aspect-ratio grouping holds no image back (see
:func:`~person_search.data.build.build_person_search_train_loader`) and the kernels are
deterministic (CPU; on CUDA some are not). Otherwise it still continues at the same iteration,
learning-rate schedule, optimizer state and data position.
"""

from __future__ import annotations

import logging
import os
import random
import weakref

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..modeling.pretrained import load_pretrained_backbone
from .checkpoint import PersonSearchCheckpointer
from .optimizer import build_optimizer

__all__ = ["Trainer", "data_stream_config"]

logger = logging.getLogger(__name__)


def data_stream_config(cfg: CfgNode, seed: int, start_iter: int) -> CfgNode:
    """A copy of ``cfg`` whose training data stream starts at iteration ``start_iter`` of the
    stream of ``seed`` (``DATALOADER.SEED`` / ``DATALOADER.START_ITER``); frozen if ``cfg``
    is."""
    out = cfg.clone()
    out.defrost()
    out.DATALOADER.SEED = int(seed)
    out.DATALOADER.START_ITER = int(start_iter)
    if cfg.is_frozen():
        out.freeze()
    return out


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
    """``DefaultTrainer`` shared by every task of the library (see the module docstring).

    * data: ``build_train_loader(cls, cfg)`` / ``build_test_loader(cls, cfg, dataset_name)`` of
      the task's subclass (:class:`~.trainers.PersonSearchTrainer`,
      :class:`~.trainers.ReIDTrainer`); this class has none;
    * evaluation: by the test dataset's ``evaluator_type`` ("person_search" or "reid");
    * optimizer: ``SOLVER.OPTIMIZER`` (SGD, Adam, AdamW); schedules from Detectron2
      (``SOLVER.LR_SCHEDULER_NAME``); AMP with ``SOLVER.AMP.ENABLED`` (CUDA only);
    * checkpoints: :class:`PersonSearchCheckpointer`, with optimizer, grad-scaler, data-stream
      and RNG state;
    * initial weights (:meth:`resume_or_load`): ``MODEL.BACKBONE.PRETRAINED_FILE``, then
      ``MODEL.WEIGHTS``; with ``--resume``, the last checkpoint of ``OUTPUT_DIR``;
    * distributed training also on CPU processes (gloo): the model is wrapped in DDP without
      ``device_ids`` there.

    ``__init__`` follows Detectron2's (same builders, same order), but builds this library's
    checkpointer, fixes the data stream's seed before the loader is built, and wraps CPU
    models for DDP correctly (Detectron2 v0.6 passes CUDA ``device_ids``).
    """

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
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
        # continues the same stream.
        self._data_seed = self.data_stream_seed(cfg)
        self._rng_to_restore: dict | None = None
        data_loader = self.build_train_loader(data_stream_config(cfg, self._data_seed, 0))
        on_cpu = all(p.device.type == "cpu" for p in model.parameters())
        ddp_kwargs = {"device_ids": None} if on_cpu else {}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
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

    @classmethod
    def data_stream_seed(cls, cfg: CfgNode) -> int:
        """Seed of the training index stream: ``DATALOADER.SEED`` when >= 0, else Detectron2's
        random seed shared by all processes (after ``default_setup`` it follows ``SEED``)."""
        if cfg.DATALOADER.SEED >= 0:
            return int(cfg.DATALOADER.SEED)
        return int(comm.shared_random_seed())

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
        loader = self.build_train_loader(
            data_stream_config(self.cfg, self._data_seed, self.start_iter)
        )
        self._trainer.data_loader = loader
        self._trainer._data_loader_iter = iter(loader)
        logger.info(f"Training data stream continued at iteration {self.start_iter}")

    # ------------------------------------------------------------- builders
    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        """The task's infinite training loader (Detectron2's contract). ``cfg`` carries the
        stream's position: ``DATALOADER.SEED`` and ``DATALOADER.START_ITER``."""
        raise NotImplementedError(
            f"{cls.__name__} has no training loader: use the trainer of the config's task, "
            "person_search.engine.get_trainer_class(cfg) (PersonSearchTrainer, ReIDTrainer)"
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        """The task's loader over a test dataset (Detectron2's contract)."""
        raise NotImplementedError(
            f"{cls.__name__} has no test loader: use the trainer of the config's task, "
            "person_search.engine.get_trainer_class(cfg) (PersonSearchTrainer, ReIDTrainer)"
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: str | None = None):
        """The evaluator named by ``MetadataCatalog.get(dataset_name).evaluator_type``
        (``output_folder``: where the person-search evaluator saves its results, default
        ``OUTPUT_DIR/inference/<dataset_name>``)."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type == "person_search":
            from person_search.evaluation import PersonSearchEvaluator

            return PersonSearchEvaluator(cfg, dataset_name, output_folder)
        if evaluator_type == "reid":
            from person_search.evaluation import ReIDEvaluator

            return ReIDEvaluator(cfg, dataset_name)
        raise ValueError(
            f"dataset {dataset_name!r} has evaluator_type={evaluator_type!r} in its metadata; "
            "the Trainer evaluates 'person_search' and 'reid' datasets"
        )
