"""Config keys for the eval part of the library (see add_eval_config)."""

from detectron2.config import CfgNode as CN


def add_eval_config(cfg: CN) -> None:
    """Add the eval keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the paper\'s value.
    """
    # Person-search evaluation (PersonSearchEvaluator; CUHK-SYSU / PRW protocols).
    cfg.TEST.PERSON_SEARCH = CN()
    # Detection score threshold (score >= it) for the search and detection metrics, in [0, 1].
    # 0.5 as SeqNet/OIM; some papers use 0.2-0.3. Printed with the results. Every detection the
    # model outputs is stored, so a saved results file can be re-evaluated at other thresholds.
    cfg.TEST.PERSON_SEARCH.DET_THRESH = 0.5
    # Protocol variants to evaluate, e.g. ["gallery_100"] (CUHK-SYSU) or ["all", "cross_camera"]
    # (PRW); empty = every variant the dataset's search protocol defines.
    cfg.TEST.PERSON_SEARCH.VARIANTS = []
    # Write OUTPUT_DIR/inference/search_results.pth (all detections, embeddings, protocol) so that
    # tools/evaluate_saved.py can re-evaluate without the model.
    cfg.TEST.PERSON_SEARCH.SAVE_RESULTS = True
    # Context bipartite graph matching re-ranking (SeqNet, AAAI 2021) exactly as published
    # (person_search/evaluation/cbgm.py), off in the papers' main tables. SeqNet's values: K1=10,
    # K2=3 on CUHK-SYSU; K1=30, K2=4 on PRW. Read by the evaluator and by PersonSearchRCNN,
    # whose query pass then also returns each query's context.
    cfg.TEST.PERSON_SEARCH.CBGM = CN()
    # Apply CBGM before ranking; the model runs each query image through the detector with the
    # query box forced in (a second detection pass per query).
    cfg.TEST.PERSON_SEARCH.CBGM.ENABLED = False
    # Count of most similar gallery detections whose images are re-scored per query.
    cfg.TEST.PERSON_SEARCH.CBGM.K1 = 10
    # Context nodes per query: the query box, then the query image's detections by score.
    cfg.TEST.PERSON_SEARCH.CBGM.K2 = 3
