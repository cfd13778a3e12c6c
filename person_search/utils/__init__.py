"""Utilities: atomic file writing (:mod:`.file_io`) and pictures of person-search rankings
(:mod:`.search_visualizer`)."""
