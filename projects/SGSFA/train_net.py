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
from person_search.engine import ReIDTrainer, launch_main

# isort: split
from sgsfa import add_sgsfa_config  # registers SGSFA's backbone and head

if __name__ == "__main__":
    launch_main(ReIDTrainer, add_sgsfa_config)
