"""person_search.evaluation."""

from .person_search_evaluator import PersonSearchEvaluator  # noqa: F401
from .reid_evaluator import ReIDEvaluator  # noqa: F401
