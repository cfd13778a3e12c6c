"""Search real footage with a trained person-search model.

``tools/index_gallery.py`` detects and embeds every person in image folders and videos
(:func:`index_footage`, resumable, sharded over Detectron2's ``launch`` processes) into an
index folder (:mod:`.index_format`); ``tools/search.py`` embeds a query box with the same model
and ranks the indexed detections by cosine similarity (:class:`FootageIndex`, back-ends in
``RETRIEVAL_REGISTRY``), writing ``results.json`` and a contact sheet.
"""

from .contact_sheet import draw_contact_sheet, draw_full_frame
from .index import FootageIndex, SearchHit
from .index_format import IndexFormatError
from .indexer import IndexSettings, index_footage, merge_chunks
from .model import Detections, FootageModel, ModelFingerprint, ModelMismatchError
from .retrieval import RETRIEVAL_REGISTRY, Retrieval, build_retrieval
from .search import (
    FootageQuery,
    check_query_box,
    load_index_model,
    query_from_entry,
    query_from_image,
    read_query_image,
    write_search_outputs,
)
from .sources import FootageSource, FrameTable, discover_sources

__all__ = [
    "RETRIEVAL_REGISTRY",
    "Detections",
    "FootageIndex",
    "FootageModel",
    "FootageQuery",
    "FootageSource",
    "FrameTable",
    "IndexFormatError",
    "IndexSettings",
    "ModelFingerprint",
    "ModelMismatchError",
    "Retrieval",
    "SearchHit",
    "build_retrieval",
    "check_query_box",
    "discover_sources",
    "draw_contact_sheet",
    "draw_full_frame",
    "index_footage",
    "load_index_model",
    "merge_chunks",
    "query_from_entry",
    "query_from_image",
    "read_query_image",
    "write_search_outputs",
]
