#!/usr/bin/env python
"""Train or evaluate MGOFE (multi-granularity occlusion feature enhancement, person search on
SeqNeXt) with the library's PersonSearchTrainer.

    python projects/MGOFE/train_net.py --config-file projects/MGOFE/configs/mgofe_cuhk_sysu.yaml
    python projects/MGOFE/train_net.py --config-file CFG --num-gpus 2
    python projects/MGOFE/train_net.py --config-file CFG --resume
    python projects/MGOFE/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth

Detectron2's project pattern: the library's ``launch_main`` and ``PersonSearchTrainer`` with
MGOFE's config keys (``add_mgofe_config``). Importing ``mgofe`` registers ``MGOFERCNN`` and
``MGOFEROIHeads`` (the package is installed with the library, see projects/MGOFE/README.md).
MGRO's copies come from the library's training mapper (``INPUT.MGRO``). Trailing ``KEY VALUE``
pairs override the config.
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
from person_search.engine import PersonSearchTrainer, launch_main

# isort: split
from mgofe import add_mgofe_config

if __name__ == "__main__":
    launch_main(PersonSearchTrainer, add_mgofe_config)
