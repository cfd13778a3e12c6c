"""person_search.engine."""
