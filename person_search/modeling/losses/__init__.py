from . import (
    hoim,  # noqa: F401  (HOIM loss: OIM + background buffer)
    oim,  # noqa: F401  (OIM loss)
    reid_losses,  # noqa: F401  (label-smoothed CE, batch-hard triplet)
)
