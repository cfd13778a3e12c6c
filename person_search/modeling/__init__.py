"""person_search.modeling."""
