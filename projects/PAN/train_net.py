#!/usr/bin/env python
"""Train or evaluate PAN (Part-Aware Network, occluded re-id) with the library's ReIDTrainer.

    python projects/PAN/train_net.py \
        --config-file projects/PAN/configs/pan_R50_occluded_dukemtmc.yaml
    python projects/PAN/train_net.py --config-file CFG --num-gpus 2
    python projects/PAN/train_net.py --config-file CFG --resume
    python projects/PAN/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth

Detectron2's project pattern: the library's ``main`` / ``setup`` / ``launch`` / ``ReIDTrainer``
with PAN's config keys (``add_pan_config``). Importing ``pan`` registers the ``PANHead`` (the
package is installed with the library, see projects/PAN/README.md). Trailing ``KEY VALUE``
pairs override the config.
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
from person_search.engine import ReIDTrainer, default_argument_parser, launch, main

# isort: split
from pan import add_pan_config


def run(args):
    return main(args, ReIDTrainer, add_config=add_pan_config)


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
