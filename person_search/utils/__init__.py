"""Utilities: atomic file writing (:mod:`.file_io`), config-selected registry look-ups
(:mod:`.registry`) and pictures of person-search rankings (:mod:`.search_visualizer`)."""
