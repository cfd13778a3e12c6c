"""PAN's mask generator: a 1x1 conv without softmax (softmax as the ablation), and a clear
error when loaded weights were trained with another mask count."""

import pytest
import torch
from detectron2.modeling import build_model
from pan_testutils import tiny_pan_cfg

from pan import MaskGenerator
from person_search.engine import PersonSearchCheckpointer


def test_one_1x1_conv_to_p_free_masks():
    torch.manual_seed(0)
    gen = MaskGenerator(6, 4)
    assert gen.conv.kernel_size == (1, 1) and gen.conv.out_channels == 4
    x = torch.randn(2, 6, 5, 3)
    masks = gen(x)
    assert masks.shape == (2, 4, 5, 3)
    torch.testing.assert_close(masks, torch.nn.functional.conv2d(x, gen.conv.weight, gen.conv.bias))
    assert (masks < 0).any() and (masks.sum(1) - 1).abs().max() > 0.1  # not probabilities


def test_softmax_ablation_normalises_over_the_masks():
    torch.manual_seed(0)
    gen = MaskGenerator(6, 4, softmax=True)
    masks = gen(torch.randn(2, 6, 5, 3))
    assert (masks >= 0).all()
    torch.testing.assert_close(masks.sum(1), torch.ones(2, 5, 3))


def test_bad_mask_count():
    with pytest.raises(ValueError, match="MODEL.PAN.NUM_MASKS"):
        MaskGenerator(6, 0)


def test_checkpoint_with_another_mask_count_names_the_key_and_both_counts(tmp_path):
    torch.manual_seed(0)
    trained = build_model(tiny_pan_cfg(num_masks=3))
    PersonSearchCheckpointer(trained, str(tmp_path)).save("model_final")
    path = str(tmp_path / "model_final.pth")

    other = build_model(tiny_pan_cfg(num_masks=5))
    # Detectron2's loader would drop the mis-shaped conv with a warning: refused instead
    with pytest.raises(ValueError, match=r"MODEL.PAN.NUM_MASKS = 5.* 3 masks"):
        PersonSearchCheckpointer(other).load(path, checkpointables=[])
    # plain load_state_dict too
    with pytest.raises(ValueError, match=r"MODEL.PAN.NUM_MASKS = 5.* 3 masks"):
        other.load_state_dict(trained.state_dict(), strict=False)

    same = build_model(tiny_pan_cfg(num_masks=3))
    with torch.no_grad():  # the loaded weights must replace these
        for p in same.head.parameters():
            p.add_(1.0)
    PersonSearchCheckpointer(same).load(path, checkpointables=[])
    for name, value in trained.head.state_dict().items():  # buffer layer included
        assert torch.equal(same.head.state_dict()[name], value), name
