"""person_search.data: datasets, mappers and data loaders (importing registers them)."""

from . import datasets  # noqa: F401  (registers the datasets)
from .build import (  # noqa: F401
    MAPPER_REGISTRY,
    build_person_search_test_loader,
    build_person_search_train_loader,
)
from .mappers import PersonSearchDatasetMapper  # noqa: F401  (registers the mapper)
from .reid_build import build_reid_test_loader, build_reid_train_loader  # noqa: F401
from .reid_mapper import REID_MAPPER_REGISTRY, build_reid_mapper  # noqa: F401  (registers)
