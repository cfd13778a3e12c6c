"""Config-selected registry look-ups with an error that names the config key."""

from __future__ import annotations

from typing import Any

from detectron2.utils.registry import Registry

__all__ = ["get_registered"]


def get_registered(registry: Registry, name: str, config_key: str) -> Any:
    """``registry.get(name)``; an unknown ``name`` raises ``KeyError`` naming ``config_key``, the
    value and the registered names."""
    try:
        return registry.get(name)
    except KeyError as e:
        known = sorted(registered for registered, _ in registry)
        raise KeyError(
            f"{config_key}={name!r} is not registered in {registry._name} (known: {known})"
        ) from e
