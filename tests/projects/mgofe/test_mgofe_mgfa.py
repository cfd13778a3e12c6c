"""MGFA: the gradient reaching the features is the reverse (times -lambda) of the
discriminator loss's, the discriminator itself descends that loss, and a step of the features
along their gradient makes the discriminator's task harder."""

import pytest
import torch
from detectron2.utils.events import EventStorage

from mgofe import MGFA, grad_reverse


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    real = (torch.randn(5, 4, generator=gen) + 1.0).requires_grad_()
    virtual = (torch.randn(5, 2, 4, generator=gen) - 1.0).requires_grad_()
    return real, virtual


@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_gradient_into_the_features_has_the_adversarial_sign(lam):
    torch.manual_seed(0)
    mgfa = MGFA(in_dim=4, hidden_dim=8, grl_lambda=lam)
    real, virtual = _inputs()
    # the discriminator's own loss, without reversal: what the discriminator descends
    plain = mgfa.discriminator_loss(real, virtual)
    g_real, g_virtual, *g_disc = torch.autograd.grad(plain, [real, virtual, *mgfa.parameters()])
    loss = mgfa(real, virtual)
    torch.testing.assert_close(loss, plain)  # the reversal changes no value
    r_real, r_virtual, *r_disc = torch.autograd.grad(loss, [real, virtual, *mgfa.parameters()])
    assert g_real.abs().sum() > 0 and g_virtual.abs().sum() > 0
    torch.testing.assert_close(r_real, -lam * g_real)
    torch.testing.assert_close(r_virtual, -lam * g_virtual)
    for a, b in zip(r_disc, g_disc):  # the discriminator is not reversed
        torch.testing.assert_close(a, b)
    # gradient descent on the total loss moves the features so that the discriminator loss
    # rises (they fool it), and moves the discriminator so that it falls
    with torch.no_grad():
        raised = mgfa.discriminator_loss(real - 0.05 * r_real, virtual - 0.05 * r_virtual)
        for p, g in zip(mgfa.parameters(), r_disc):
            p -= 0.05 * g
        lowered = mgfa.discriminator_loss(real, virtual)
    assert raised > plain > lowered


def test_grad_reverse_by_hand():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    (grad_reverse(x, 2.0) * torch.tensor([3.0, 4.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-6.0, -8.0]))


def test_loss_is_balanced_and_logs_accuracy():
    torch.manual_seed(0)
    mgfa = MGFA(in_dim=4, hidden_dim=8)
    for layer in (mgfa.discriminator[0], mgfa.discriminator[2]):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    real, virtual = _inputs()
    with EventStorage() as storage:
        loss = mgfa(real, virtual)
    # logit 0 everywhere: BCE log(2) on both sides
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert storage.latest()["mgfa/accuracy"][0] == pytest.approx(0.5)
    empty = mgfa(torch.zeros(0, 4), torch.zeros(0, 2, 4))
    assert empty.item() == 0.0 and empty.requires_grad
