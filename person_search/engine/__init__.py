"""Training engine shared by every task of the library: :class:`Trainer`, checkpointing,
optimizers, epoch schedules and the set-up used by the ``train_net.py`` entry points."""

from .checkpoint import CheckpointMismatchError, PersonSearchCheckpointer, UntrustedCheckpointError
from .defaults import default_argument_parser, launch, load_config, main, setup
from .optimizer import build_optimizer
from .schedule import count_training_images, resolve_schedule
from .trainer import Trainer

__all__ = [
    "CheckpointMismatchError",
    "PersonSearchCheckpointer",
    "Trainer",
    "UntrustedCheckpointError",
    "build_optimizer",
    "count_training_images",
    "default_argument_parser",
    "launch",
    "load_config",
    "main",
    "resolve_schedule",
    "setup",
]
