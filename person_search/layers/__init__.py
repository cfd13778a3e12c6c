"""person_search.layers."""
