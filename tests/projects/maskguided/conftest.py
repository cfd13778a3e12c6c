"""MaskGuidedPS project tests: the library first (Detectron2 compat layer), then the project
package (``maskguided``, installed with the library by setup.py; registers MaskGuidedROIHeads
and MaskGuidedDatasetMapper)."""

import person_search  # noqa: F401

# isort: split
import maskguided  # noqa: F401
