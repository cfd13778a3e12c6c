"""Config keys of footage search (``tools/index_gallery.py``, ``tools/search.py``; see
:mod:`person_search.footage`)."""

from detectron2.config import CfgNode as CN


def add_footage_config(cfg: CN) -> None:
    """Add the ``FOOTAGE`` keys to ``cfg`` in place.

    One comment per key: what it is, its unit, the value used (no paper indexes footage).
    """
    cfg.FOOTAGE = CN()
    # Detections kept in an index: score >= this, in [0, 1]. 0.5 as the evaluation's
    # TEST.PERSON_SEARCH.DET_THRESH (OIM / SeqNet); detections below it are never searchable.
    cfg.FOOTAGE.SCORE_THRESH = 0.5
    # Frames per forward pass while indexing. Only frames of the same size after resizing share
    # a batch (no padding: each frame gets the embeddings evaluation gives it). 1 on CPU; 8-16
    # on a GPU.
    cfg.FOOTAGE.BATCH_SIZE = 1
    # Frames per chunk file: the unit written atomically, resumed and shared among processes.
    cfg.FOOTAGE.CHUNK_SIZE = 512
    cfg.FOOTAGE.RETRIEVAL = CN()
    # Retrieval back-end recorded in the index (person_search.footage.RETRIEVAL_REGISTRY):
    # "TorchExact" (brute-force matmul), "FaissExact" (faiss exhaustive inner product),
    # "FaissIVF" (faiss inverted file, approximate, for very large indexes) or "auto":
    # TorchExact below AUTO_FAISS_MIN detections, FaissExact from it.
    cfg.FOOTAGE.RETRIEVAL.NAME = "auto"
    # "auto" switches from TorchExact to FaissExact at this many detections (one CPU thread:
    # both ~0.3 ms per query at 10k, faiss 5x faster at 100k; benchmarks/bench_search.py).
    cfg.FOOTAGE.RETRIEVAL.AUTO_FAISS_MIN = 20_000
    # FaissIVF: number of inverted lists (k-means cells); 0 = 4 * sqrt(detections), faiss's
    # rule of thumb.
    cfg.FOOTAGE.RETRIEVAL.IVF_NLIST = 0
    # FaissIVF: cells visited per query (more: slower, closer to exact).
    cfg.FOOTAGE.RETRIEVAL.IVF_NPROBE = 32
