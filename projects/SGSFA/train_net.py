#!/usr/bin/env python
"""Train or evaluate SGSFA (semantic-guided attention + shared feature alignment) for
occluded re-id, Detectron2-style.

    python projects/SGSFA/train_net.py --config-file projects/SGSFA/configs/occluded_dukemtmc.yaml
    python projects/SGSFA/train_net.py --config-file CFG --num-gpus 4
    python projects/SGSFA/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth

The library's :class:`~person_search.engine.ReIDTrainer` trains it (re-id data with parsing maps,
``ReIDEvaluator`` in part mode); the project adds its config keys (:func:`add_sgsfa_config`) and
registers its backbone and head by importing :mod:`sgsfa` (this file's folder is on
``sys.path`` when run as a script).
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
import person_search  # noqa: F401

# isort: split
from person_search.engine import ReIDTrainer, default_argument_parser, launch, main
from sgsfa import add_sgsfa_config  # registers SGSFA's backbone and head


def run(args):
    return main(args, ReIDTrainer, add_config=add_sgsfa_config)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        run,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
