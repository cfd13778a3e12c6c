"""Pictures of model outputs: person-search rankings (:mod:`.search_visualizer`) and
detections, with instance masks when the model has a mask branch (:mod:`.detection_view`).

Above :mod:`person_search.evaluation` in the layering: the pictures draw the evaluation's own
ranking. Not imported by ``import person_search``.
"""
