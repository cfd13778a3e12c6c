"""Training engine shared by every task of the library: :class:`Trainer` and its one subclass
per task (:class:`PersonSearchTrainer`, :class:`ReIDTrainer`; :func:`get_trainer_class` picks
the one of ``cfg.TASK``), checkpointing, optimizers, epoch schedules, the set-up used by the
``train_net.py`` entry points, and the CPU demos' flow (:mod:`.demo`)."""

from .checkpoint import CheckpointMismatchError, PersonSearchCheckpointer, UntrustedCheckpointError
from .defaults import (
    default_argument_parser,
    import_add_config,
    launch,
    launch_main,
    load_config,
    main,
    setup,
)
from .optimizer import build_optimizer
from .schedule import count_training_images, resolve_schedule
from .seeded_runs import (
    comparison_argument_parser,
    mean_std,
    parse_comparison_args,
    seeded_config,
    train_from_scratch,
)
from .trainer import Trainer, data_stream_config
from .trainers import TASKS, PersonSearchTrainer, ReIDTrainer, get_trainer_class

__all__ = [
    "TASKS",
    "CheckpointMismatchError",
    "PersonSearchCheckpointer",
    "PersonSearchTrainer",
    "ReIDTrainer",
    "Trainer",
    "UntrustedCheckpointError",
    "build_optimizer",
    "comparison_argument_parser",
    "count_training_images",
    "data_stream_config",
    "default_argument_parser",
    "get_trainer_class",
    "import_add_config",
    "launch",
    "launch_main",
    "load_config",
    "main",
    "mean_std",
    "parse_comparison_args",
    "resolve_schedule",
    "seeded_config",
    "setup",
    "train_from_scratch",
]
