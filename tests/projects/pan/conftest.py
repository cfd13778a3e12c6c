"""PAN project tests: the library first (Detectron2 compat layer), then the project package
(``pan``, installed with the library by setup.py; registers PANHead)."""

import person_search  # noqa: F401

# isort: split
import pan  # noqa: F401
