import torch

from tests.vflgan_app.conftest import TINY
from vflgan_app.architectures import get_architecture
from vflgan_app.core.losses import (
    bottom_critic_penalty,
    gradient_norm_penalty,
    head_penalty,
)
from vflgan_app.core.model import Generator, hard_gumbel_softmax
from vflgan_app.data.schema import OutputSpan


def test_gradient_norm_penalty_pinned():
    grad = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])  # norms 5, 0, 1
    assert torch.isclose(gradient_norm_penalty(grad), torch.tensor((16 + 1 + 0) / 3))


def test_bottom_critic_penalty_matches_closed_form():
    # D(x) = W x with W (2, 3): d sum(D(x))/dx = W^T 1 for every row, so the penalty is
    # (||column sums of W|| - 1)^2 whatever x is.
    W = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]])
    x = torch.randn(5, 3, requires_grad=True)
    pen = bottom_critic_penalty(x @ W.T, x)
    expected = (W.sum(0).norm() - 1) ** 2
    assert torch.isclose(pen, expected)
    # a head with weight w: penalty (||w|| - 1)^2
    h = torch.randn(4, 2, requires_grad=True)
    w = torch.tensor([[0.6], [0.8]])
    assert torch.isclose(head_penalty(h @ w, h), torch.tensor(0.0), atol=1e-7)
    # and it is differentiable w.r.t. the weights (double backward works)
    Wp = W.clone().requires_grad_(True)
    bottom_critic_penalty(x @ Wp.T, x).backward()
    assert Wp.grad is not None and Wp.grad.abs().sum() > 0


def test_hard_gumbel_is_one_hot_and_straight_through():
    logits = torch.tensor([[0.0, 5.0, 0.0]] * 200, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    y = hard_gumbel_softmax(logits, tau=1.0, generator=gen)
    assert torch.all(y.sum(1) == 1) and set(y.detach().unique().tolist()) == {0.0, 1.0}
    # most mass on the large logit, but the noise really samples (not argmax only)
    picks = y.detach().argmax(1)
    assert 0.9 < (picks == 1).float().mean() < 1.0
    # gradient flows through the soft sample
    (y[:, 0] * 1.0).sum().backward()
    assert logits.grad.abs().sum() > 0
    # same generator seed -> same draw
    y2 = hard_gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)


def test_generator_heads_and_bn_eps_quirk():
    spans = [
        OutputSpan("linear", 0, 2),
        OutputSpan("onehot", 2, 5),
        OutputSpan("tanh", 5, 6),
    ]
    g = Generator(TINY, spans, 6)
    out = g(torch.randn(16, TINY.latent_dim), torch.Generator().manual_seed(1))
    assert out.shape == (16, 6)
    assert torch.all(out[:, 2:5].sum(1) == 1)
    assert out[:, 5].abs().max() <= 1
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == len(TINY.gen_hidden) - 1 and all(bn.eps == 0.8 for bn in bns)


def test_paper_mnist_sizes():
    a = get_architecture("mnist")
    g = Generator(a, [OutputSpan("tanh", 0, 392)], 392)
    linears = [m for m in g.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (100, 128),
        (128, 256),
        (256, 512),
        (512, 1024),
        (1024, 392),
    ]
    assert a.if_dim == 256 and a.lambda_gp == 40 and a.batch_size == 64
    assert get_architecture("wine_red").bias is False
