"""Utilities: atomic file writing (:mod:`.file_io`) and config-selected registry look-ups
(:mod:`.registry`)."""
