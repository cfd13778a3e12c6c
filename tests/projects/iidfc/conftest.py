"""IIDFC project tests: the library first (Detectron2 compat layer), then the project package
(``iidfc``, installed with the library by setup.py; registers its heads, losses, attentions)."""

import person_search  # noqa: F401

# isort: split
import iidfc  # noqa: F401
