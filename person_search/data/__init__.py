"""person_search.data."""
