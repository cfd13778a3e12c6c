"""Utilities shared by the tools: the CPU demos' flow (:mod:`.demo`) and pictures of
person-search rankings (:mod:`.search_visualizer`)."""
