"""person_search.evaluation."""
