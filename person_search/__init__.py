"""person_search: person search and occluded person re-identification on Detectron2.

Importing the package applies :mod:`person_search.compat` (only the fixes the installed
Detectron2 needs) and registers every meta architecture, backbone, ROI head, dataset and
evaluator of the library into Detectron2's registries.
"""

from . import compat

with compat.quiet_torchscript_deprecation():
    compat.apply()
    from . import config, data, evaluation, modeling  # noqa: E402  (registers components)

__version__ = "0.1.0"
__all__ = ["compat", "config", "data", "evaluation", "modeling", "__version__"]
