"""Contact sheet and full-frame pictures (person_search.footage.contact_sheet)."""

from __future__ import annotations

import numpy as np
import pytest

from person_search.footage import SearchHit, draw_contact_sheet, draw_full_frame
from person_search.footage.contact_sheet import MATCH_COLOR, crop_with_context, hit_caption
from person_search.visualization.search_visualizer import FRAME, GAP, PANEL_HEIGHT, QUERY_COLOR


def _hit(rank: int, kind: str = "video") -> SearchHit:
    return SearchHit(
        rank=rank,
        similarity=0.9 - rank / 100,
        detection_id=rank,
        frame_id=rank,
        kind=kind,
        path="/v/door.mp4" if kind == "video" else "/f/cam1/a.jpg",
        frame=25 * rank if kind == "video" else None,
        time=2.5 * rank if kind == "video" else None,
        camera="door" if kind == "video" else "cam1",
        box=(40.0 + rank, 20.0, 70.0 + rank, 100.0),
        score=0.95,
    )


def _border(panel: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            panel[:FRAME].reshape(-1, 3),
            panel[-FRAME:].reshape(-1, 3),
            panel[:, :FRAME].reshape(-1, 3),
            panel[:, -FRAME:].reshape(-1, 3),
        ]
    )


def test_crop_keeps_the_box_with_context_inside_the_frame():
    image = np.zeros((120, 200, 3), np.uint8)
    crop, box = crop_with_context(image, (40, 20, 70, 100))
    # 80 px high box: 12 px above and below; at least 0.6 x 104 px wide around its centre.
    assert crop.shape[:2] == (104, 64)  # columns floor(55 - 31.2) = 23 to ceil(55 + 31.2) = 87
    np.testing.assert_allclose(box, [17.0, 12.0, 47.0, 92.0])
    crop, box = crop_with_context(image, (0, 0, 10, 120))  # at the corner: clipped
    assert crop.shape[0] == 120 and box[0] == 0 and box[1] == 0
    with pytest.raises(ValueError, match="outside the 200x120 frame"):
        crop_with_context(image, (300, 10, 320, 50))


def test_captions_name_rank_similarity_camera_and_frame():
    assert hit_caption(_hit(2)) == "#2 sim 0.880\ndoor f50 5.0s"
    assert hit_caption(_hit(1, "image")) == "#1 sim 0.890\ncam1 a.jpg"


def test_sheet_layout_query_left_matches_in_rows():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 200, 3), dtype=np.uint8) for _ in range(8)]
    hits = [_hit(r, "video" if r % 2 else "image") for r in range(1, 8)]
    sheet, rects = draw_contact_sheet(frames[0], (40, 20, 70, 100), hits, frames[1:], columns=3)
    assert len(rects) == 8
    rows = sorted({y0 for _, y0, _, _ in rects[1:]})
    assert rows == [0, PANEL_HEIGHT + GAP, 2 * (PANEL_HEIGHT + GAP)]  # 3 + 3 + 1 matches
    assert sheet.shape[0] == 3 * PANEL_HEIGHT + 2 * GAP
    query_x1 = rects[0][2]
    assert all(x0 >= query_x1 + GAP for x0, _, _, _ in rects[1:])  # query on the left
    for i, (x0, y0, x1, y1) in enumerate(rects):
        color = QUERY_COLOR if i == 0 else MATCH_COLOR
        assert (_border(sheet[y0:y1, x0:x1]) == np.asarray(color, np.uint8)).all()
    with pytest.raises(ValueError, match="2 matches but 1 images"):
        draw_contact_sheet(frames[0], (40, 20, 70, 100), hits[:2], frames[:1])


def test_full_frame_keeps_the_frame_size_and_boxes_the_match():
    image = np.full((120, 200, 3), 128, np.uint8)
    picture = draw_full_frame(image, _hit(1))
    assert picture.shape == (120 + 2 * FRAME, 200 + 2 * FRAME, 3)
    assert (_border(picture) == np.asarray(MATCH_COLOR, np.uint8)).all()
    # The box's left edge (x = 41) is drawn in the match colour over most of its height.
    column = picture[FRAME + 30 : FRAME + 95, FRAME + 39 : FRAME + 44].astype(int)
    near = (np.abs(column - np.asarray(MATCH_COLOR)) <= 30).all(axis=-1).any(axis=1)
    assert near.mean() > 0.8
