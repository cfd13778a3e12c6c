"""ps_eval tests: apply person_search's compat layer before any test module imports detectron2."""

import person_search  # noqa: F401
