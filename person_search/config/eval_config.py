"""Config keys of the evaluators (owner: ``person_search.evaluation``): the person-search
protocols and re-id matching. See :func:`add_eval_config`."""

from detectron2.config import CfgNode as CN

__all__ = ["add_eval_config"]


def add_eval_config(cfg: CN) -> None:
    """Add the evaluation keys to ``cfg`` in place: ``TEST.PERSON_SEARCH``, ``TEST.REID``.

    One comment per key: what it is, its unit, the paper's value.
    """
    _C = cfg
    # ------------------------------------------------- person search (PersonSearchEvaluator)
    _C.TEST.PERSON_SEARCH = CN()
    # Detection score threshold (score >= it) for the search and detection metrics, in [0, 1].
    # 0.5 as SeqNet/OIM; some papers use 0.2-0.3. Printed with the results. Every detection the
    # model outputs is stored, so a saved results file can be re-evaluated at other thresholds.
    _C.TEST.PERSON_SEARCH.DET_THRESH = 0.5
    # Protocol variants to evaluate, e.g. ["gallery_100"] (CUHK-SYSU) or ["all", "cross_camera"]
    # (PRW); empty = every variant the dataset's search protocol defines.
    _C.TEST.PERSON_SEARCH.VARIANTS = []
    # Write OUTPUT_DIR/inference/search_results.pth (all detections, embeddings, protocol) so that
    # tools/evaluate_saved.py can re-evaluate without the model.
    _C.TEST.PERSON_SEARCH.SAVE_RESULTS = True
    # Context bipartite graph matching re-ranking (SeqNet, AAAI 2021) exactly as published
    # (person_search/evaluation/cbgm.py), off in the papers' main tables. SeqNet's values: K1=10,
    # K2=3 on CUHK-SYSU; K1=30, K2=4 on PRW. Read by the evaluator and by PersonSearchRCNN,
    # whose query pass then also returns each query's context.
    _C.TEST.PERSON_SEARCH.CBGM = CN()
    # Apply CBGM before ranking; the model runs each query image through the detector with the
    # query box forced in (a second detection pass per query).
    _C.TEST.PERSON_SEARCH.CBGM.ENABLED = False
    # Count of most similar gallery detections whose images are re-scored per query.
    _C.TEST.PERSON_SEARCH.CBGM.K1 = 10
    # Context nodes per query: the query box, then the query image's detections by score.
    _C.TEST.PERSON_SEARCH.CBGM.K2 = 3
    # Occluded-query robustness (ours; no paper or toolkit reports it): each query is embedded
    # again from copies of its image in which random grid cells of the query box are covered
    # (the compiled occlusion op; never the whole box), one copy per (grid, coverage) setting,
    # and searched in the same gallery detections (the protocol's default variant, no CBGM).
    # Reported per setting (search mAP / top-1, mean covered fraction of the box) beside the
    # unoccluded queries, as a table and OUTPUT/inference/<dataset>/occluded_queries.png.
    _C.TEST.PERSON_SEARCH.OCCLUDED_QUERIES = CN()
    # Whether the evaluation runs (the test mapper makes the copies; the model embeds each).
    _C.TEST.PERSON_SEARCH.OCCLUDED_QUERIES.ENABLED = False
    # (rows, cols) grids the query box is split into: one curve each (MGRO's levels).
    _C.TEST.PERSON_SEARCH.OCCLUDED_QUERIES.GRIDS = [[2, 1], [2, 2]]
    # Probabilities that a cell is covered, each in (0, 1]: the points of each curve.
    _C.TEST.PERSON_SEARCH.OCCLUDED_QUERIES.COVERAGES = [0.25, 0.5, 0.75]
    # Fill of covered cells: "mean" (image's per-channel mean), "constant" or "noise".
    _C.TEST.PERSON_SEARCH.OCCLUDED_QUERIES.FILL = "mean"
    # Value of FILL "constant", an integer 0..255.
    _C.TEST.PERSON_SEARCH.OCCLUDED_QUERIES.FILL_VALUE = 0
    # Fixed seed of the copies (with the query index): every model sees the same occlusions.
    _C.TEST.PERSON_SEARCH.OCCLUDED_QUERIES.SEED = 0

    # ------------------------------------------------------------------ re-id (ReIDEvaluator)
    _C.TEST.REID = CN()
    # Images per test batch (all ranks together); only throughput, not results, depends on it.
    _C.TEST.REID.IMS_PER_BATCH = 64
    # Distance on the features: "cosine" (1 - cosine similarity) or "euclidean" (L2, not squared).
    _C.TEST.REID.METRIC = "cosine"
    # Which model outputs are matched: "global" ("features"), "parts" ("part_features" with
    # "part_visibility") or "global+parts" (sum of the two distances).
    _C.TEST.REID.FEATURE = "global"
    # A part is visible when its visibility score is > this (SGSFA eq. 5, tau; the text gives no
    # value, we use 0.5).
    _C.TEST.REID.PART_VISIBILITY_THRESHOLD = 0.5
    # Part distance: "mean" (sum over shared visible parts / their number; reid-protocol.md) or
    # "sum" (SGSFA eq. 7, unnormalised sum over shared visible parts).
    _C.TEST.REID.PART_DISTANCE = "mean"
    # Largest rank of the CMC curve reported (Rank-1/5/10 need >= 10).
    _C.TEST.REID.MAX_RANK = 10
    # k-reciprocal re-ranking (Zhong et al. CVPR 2017); neither paper re-ranks its main results.
    _C.TEST.REID.RERANK = CN()
    # Whether re-ranking is applied to the distance matrix before evaluation.
    _C.TEST.REID.RERANK.ENABLED = False
    # k1: size of the k-reciprocal neighbour sets (20 in Zhong et al.).
    _C.TEST.REID.RERANK.K1 = 20
    # k2: neighbours averaged in the local query expansion (6 in Zhong et al.).
    _C.TEST.REID.RERANK.K2 = 6
    # lambda: weight of the original distance in the final one (0.3 in Zhong et al.).
    _C.TEST.REID.RERANK.LAMBDA = 0.3
