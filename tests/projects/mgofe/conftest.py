"""MGOFE project tests: the library first (Detectron2 compat layer), then the project package
(``mgofe``, installed with the library by setup.py; registers MGOFERCNN and MGOFEROIHeads)."""

import person_search  # noqa: F401

# isort: split
import mgofe  # noqa: F401
