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
``person_search.engine.launch_main`` parses the command line and launches the processes.
"""

# person_search first: it applies the compat fixes Detectron2 needs, and registers everything.
from person_search.engine import launch_main

if __name__ == "__main__":
    # No trainer given: the trainer of the config's TASK (PersonSearchTrainer or ReIDTrainer).
    launch_main()
