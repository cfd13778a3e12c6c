"""The SGSFA project tests import the library first (Detectron2's compat fixes, registries)."""

import person_search  # noqa: F401
import sgsfa  # noqa: F401  (registers SGSFA's backbone and head)
