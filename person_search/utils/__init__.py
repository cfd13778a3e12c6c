"""person_search.utils."""
