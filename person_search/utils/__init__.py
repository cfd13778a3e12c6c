"""Utilities: atomic file writing (:mod:`.file_io`), the CPU demos' flow (:mod:`.demo`) and
pictures of person-search rankings (:mod:`.search_visualizer`)."""
