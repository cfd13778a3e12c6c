#!/usr/bin/env python
"""Train or evaluate any model of the library (person search or re-id) from a config file.

    python tools/train_net.py --config-file configs/oim/oim_R50_cuhk_sysu.yaml
    python tools/train_net.py --config-file configs/oim/oim_R50_cuhk_sysu.yaml --num-gpus 4
    python tools/train_net.py --config-file CFG --resume                 # continue OUTPUT_DIR
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth

Trailing ``KEY VALUE`` pairs override the config (an unknown key is an error). The config's
``TASK`` picks the trainer (``person_search.engine.get_trainer_class``). Training writes
checkpoints, ``metrics.json`` and TensorBoard events to OUTPUT_DIR and prints losses with an
ETA; ``--resume`` continues the last checkpoint at its iteration (exactly, see
``person_search.engine.trainer``); ``--eval-only`` writes ``OUTPUT_DIR/eval_results.json``.
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
from person_search.engine import default_argument_parser, launch, main


def run(args):
    # The trainer of the config's TASK (PersonSearchTrainer or ReIDTrainer).
    return main(args)


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
