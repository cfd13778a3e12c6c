"""person_search.modeling."""

from . import (  # noqa: E402,F401  (registers re-id parts)
    backbone,
    losses,
    meta_arch,
    reid_heads,
    roi_heads,  # noqa: E402,F401  (registers the person-search RoI heads)
)
