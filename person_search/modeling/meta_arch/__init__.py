from . import (
    person_search_rcnn,  # noqa: F401  (registers PersonSearchRCNN)
    reid,  # noqa: F401  (registers ReIDBaseline)
)
