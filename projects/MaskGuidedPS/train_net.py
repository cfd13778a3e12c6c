#!/usr/bin/env python
"""Train or evaluate MaskGuidedPS (segmentation-mask guided person search) with the library's
PersonSearchTrainer.

    python projects/MaskGuidedPS/train_net.py \
        --config-file projects/MaskGuidedPS/configs/maskguided_R50_cuhk_sysu.yaml
    python projects/MaskGuidedPS/train_net.py --config-file CFG --num-gpus 2
    python projects/MaskGuidedPS/train_net.py --config-file CFG --resume
    python projects/MaskGuidedPS/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS W.pth

Detectron2's project pattern: the library's ``main`` / ``setup`` / ``launch`` /
``PersonSearchTrainer`` with MaskGuidedPS's config keys (``add_maskguided_config``). Importing
``maskguided`` registers ``MaskGuidedROIHeads`` and ``MaskGuidedDatasetMapper`` (the package is
installed with the library, see projects/MaskGuidedPS/README.md). Trailing ``KEY VALUE`` pairs
override the config.
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
from person_search.engine import PersonSearchTrainer, default_argument_parser, launch, main

# isort: split
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from maskguided import add_maskguided_config


def run(args):
    # the mask loader's summary (images and persons with masks, every skipped mask)
    setup_logger(name="maskguided", distributed_rank=comm.get_rank())
    return main(args, PersonSearchTrainer, add_config=add_maskguided_config)


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
