#!/usr/bin/env python
"""Train or evaluate MaskGuidedPS (segmentation-mask guided person search) with the library's
PersonSearchTrainer.

    python projects/MaskGuidedPS/train_net.py \
        --config-file projects/MaskGuidedPS/configs/maskguided_R50_cuhk_sysu.yaml
    python projects/MaskGuidedPS/train_net.py --config-file CFG --num-gpus 2
    python projects/MaskGuidedPS/train_net.py --config-file CFG --resume
    python projects/MaskGuidedPS/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS W.pth

Detectron2's project pattern: the library's ``launch_main`` and ``PersonSearchTrainer`` with
MaskGuidedPS's config keys (``add_maskguided_config``; the ``maskguided`` logger is set up with
the library's, so the mask loader's summary and every skipped mask are logged). Importing
``maskguided`` registers ``MaskGuidedROIHeads`` and ``MaskGuidedDatasetMapper`` (the package is
installed with the library, see projects/MaskGuidedPS/README.md). Trailing ``KEY VALUE`` pairs
override the config.
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
from person_search.engine import PersonSearchTrainer, launch_main

# isort: split
from maskguided import add_maskguided_config

if __name__ == "__main__":
    launch_main(PersonSearchTrainer, add_maskguided_config)
