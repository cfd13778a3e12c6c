#!/usr/bin/env python
"""Train or evaluate IIDFC (FC loss, pedestrian attention, IRR box loss on HOIM / Res2Net-50)
with the library's PersonSearchTrainer.

    python projects/IIDFC/train_net.py \
        --config-file projects/IIDFC/configs/iidfc_res2net50_cuhk_sysu.yaml
    python projects/IIDFC/train_net.py --config-file CFG --num-gpus 4
    python projects/IIDFC/train_net.py --config-file CFG --resume
    python projects/IIDFC/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth

Detectron2's project pattern: the library's ``launch_main`` and ``PersonSearchTrainer`` with
IIDFC's config keys (``add_iidfc_config``). Importing ``iidfc`` registers its RoI heads, re-id
losses and RoI attentions (the package is installed with the library, see
projects/IIDFC/README.md). Trailing ``KEY VALUE`` pairs override the config.
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
from person_search.engine import PersonSearchTrainer, launch_main

# isort: split
from iidfc import add_iidfc_config

if __name__ == "__main__":
    launch_main(PersonSearchTrainer, add_iidfc_config)
