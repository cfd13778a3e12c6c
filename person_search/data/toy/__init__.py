"""Synthetic toy datasets written in the real datasets' file formats (see ``make_toy_dataset``)."""

from .generate import TOY_FORMATS, make_toy_dataset
from .identities import PARSING_CLASSES, ToyIdentity, make_identities, render_person
from .io import atomic_output_dir

__all__ = [
    "PARSING_CLASSES",
    "TOY_FORMATS",
    "ToyIdentity",
    "atomic_output_dir",
    "make_identities",
    "make_toy_dataset",
    "render_person",
]
