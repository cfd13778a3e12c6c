"""Utilities: atomic file writing (:mod:`.file_io`) and the CPU demos' flow (:mod:`.demo`)."""
