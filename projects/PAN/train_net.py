#!/usr/bin/env python
"""Train or evaluate PAN (Part-Aware Network, occluded re-id) with the library's ReIDTrainer.

    python projects/PAN/train_net.py \
        --config-file projects/PAN/configs/pan_R50_occluded_dukemtmc.yaml
    python projects/PAN/train_net.py --config-file CFG --num-gpus 2
    python projects/PAN/train_net.py --config-file CFG --resume
    python projects/PAN/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth

Detectron2's project pattern: the library's ``launch_main`` (command line, ``setup``, ``main``,
``launch``) and ``ReIDTrainer`` with PAN's config keys (``add_pan_config``). Importing ``pan``
registers the ``PANHead`` (the package is installed with the library, see
projects/PAN/README.md). Trailing ``KEY VALUE`` pairs override the config.
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
from person_search.engine import ReIDTrainer, launch_main

# isort: split
from pan import add_pan_config

if __name__ == "__main__":
    launch_main(ReIDTrainer, add_pan_config)
