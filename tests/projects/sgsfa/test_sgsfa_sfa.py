"""SFA: head top from a hand-drawn mask, the 15/23/62 split, regions and their pooling."""

import pytest
import torch

from sgsfa.sfa import (
    REGIONS,
    find_head_top,
    region_fraction,
    region_pool,
    region_rows,
    split_rows,
)


def _head_mask() -> torch.Tensor:
    """16 x 8 learned head mask: the head at rows 3-4, a stray set cell at row 5, and a cell
    at row 1 just below the 0.5 threshold (not set)."""
    mask = torch.full((16, 8), 0.1)
    mask[3:5, 3:5] = 0.9
    mask[5, 7] = 0.6
    mask[1, 0] = 0.5
    return mask


def test_head_top_is_the_first_row_with_a_set_cell():
    top, found = find_head_top(_head_mask()[None])
    assert top.tolist() == [3] and found.tolist() == [True]
    # scanning order: a set cell anywhere in a higher row wins, whatever its column
    mask = _head_mask()
    mask[2, 7] = 0.51
    assert find_head_top(mask[None])[0].tolist() == [2]
    # the threshold is strict and configurable
    assert find_head_top(_head_mask()[None], threshold=0.95)[1].tolist() == [False]
    assert find_head_top(_head_mask()[None], threshold=0.45)[0].tolist() == [1]


def test_empty_head_mask_falls_back_to_the_top_of_the_crop():
    empty = torch.full((1, 16, 8), 0.3)  # nothing above 0.5: head occluded or missed
    top, found = find_head_top(empty)
    assert top.tolist() == [0] and found.tolist() == [False]
    # the split then starts at row 0: the whole map is the body
    assert split_rows(top, 16).tolist() == [[0, 2, 6, 16]]


def test_split_15_23_62_below_the_head():
    # head top at row 3 of 16: body of 13 rows -> top 2 (15.4%), middle 3 (23.1%), bottom 8
    bounds = split_rows(torch.tensor([3, 0]), 16)
    assert bounds.tolist() == [[3, 5, 8, 16], [0, 2, 6, 16]]
    # a toy-sized map (8 rows): 1 / 2 / 5 rows
    assert split_rows(torch.tensor([0]), 8).tolist() == [[0, 1, 3, 8]]
    # a head top in the last rows still leaves one row per block
    assert split_rows(torch.tensor([15]), 16).tolist() == [[13, 14, 15, 16]]
    # other proportions are honoured; bad ones are refused naming the key
    assert split_rows(torch.tensor([0]), 10, (0.2, 0.3, 0.5)).tolist() == [[0, 2, 5, 10]]
    with pytest.raises(ValueError, match="MODEL.SGSFA.SPLIT"):
        split_rows(torch.tensor([0]), 16, (0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="3 rows"):
        split_rows(torch.tensor([0]), 2)


def test_regions_rows_and_pooling_on_hand_values():
    rows = region_rows(torch.tensor([[3, 5, 8, 16]]), 16)
    assert REGIONS == ("top", "middle", "bottom", "top+middle", "middle+bottom")
    expected = [
        [3, 4],
        [5, 6, 7],
        list(range(8, 16)),
        [3, 4, 5, 6, 7],
        list(range(5, 16)),
    ]
    assert [r.nonzero().flatten().tolist() for r in rows[0]] == expected
    # channel 0 holds the row index, channel 1 is 1; two columns (pooled over too)
    features = torch.stack([torch.arange(16.0)[:, None].expand(16, 2), torch.ones(16, 2)])[
        None
    ]  # (1, 2, 16, 2)
    pooled = region_pool(features, rows)
    assert pooled.shape == (1, 5, 2)
    torch.testing.assert_close(pooled[0, :, 0], torch.tensor([3.5, 6.0, 11.5, 5.0, 10.0]))
    torch.testing.assert_close(pooled[0, :, 1], torch.ones(5))
    # the fraction of each region's cells a mask covers: body on rows 3-9, left column only
    body = torch.zeros(1, 16, 2)
    body[0, 3:10, 0] = 1.0
    torch.testing.assert_close(
        region_fraction(body, rows)[0], torch.tensor([0.5, 0.5, 2 / 16, 0.5, 5 / 22])
    )
