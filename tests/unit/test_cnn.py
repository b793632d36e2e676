"""The CNN policy (issue 21 item 2): image layouts, pixel scaling, and the checks every policy
gets — Fisher-vector products three ways, the natural gradient within 90°."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.distributions as td
from torch import nn

from trustpg.core.distributions import kl
from trustpg.core.fisher import fisher_quadratic, fisher_vector_product, functorch_fvp
from trustpg.core.linalg import angle_degrees, conjugate_gradient, flat_grad
from trustpg.nets.cnn import CNNActor, CNNCritic, image_layout, pixel_scale


def test_image_layouts():
    box = lambda shape, dtype=np.uint8: gym.spaces.Box(0, 255, shape, dtype)  # noqa: E731
    assert image_layout(box((4, 84, 84))) == ((4, 84, 84), False)  # a frame stack: channels first
    assert image_layout(box((10, 10, 4))) == ((4, 10, 10), True)  # MinAtar: channels last
    assert image_layout(box((10, 10, 10))) == ((10, 10, 10), True)  # ambiguous: Gymnasium's HWC
    assert image_layout(box((84, 84))) == ((1, 84, 84), True)
    assert image_layout(box((17,))) is None and image_layout(box((2, 2, 3))) is None
    assert image_layout(gym.spaces.Discrete(3)) is None
    assert pixel_scale(box((4, 84, 84))) == 1 / 255
    assert pixel_scale(gym.spaces.Box(0, 1, (10, 10, 4), bool)) == 1.0


@pytest.mark.parametrize("shape", [(10, 10, 3), (4, 40, 40)])
def test_frames_in_any_form_give_one_distribution(shape):
    """uint8 frames as collected, flattened (the critic's values), or float (acting): the same."""
    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    actor, critic = CNNActor(space, 3, "categorical"), CNNCritic(space)
    frames = torch.randint(0, 256, (5, *shape), dtype=torch.uint8)
    logits = actor(frames).params[0]
    assert logits.shape == (5, 3)
    assert torch.equal(actor(frames.reshape(5, -1)).params[0], logits)
    assert torch.allclose(actor(frames.float()).params[0], logits)
    assert critic(frames).shape == (5,)
    assert torch.equal(critic(frames.reshape(5, -1)), critic(frames))
    # The trunk sees the scaled frame: a frame of all 255 is a frame of all ones to the network.
    ones = actor.trunk.conv(torch.ones(1, *actor.trunk.chw))
    full = torch.full((1, *shape), 255, dtype=torch.uint8)
    x = full.float() * actor.trunk.scale
    x = x.permute(0, 3, 1, 2) if actor.trunk.channels_last else x
    assert torch.allclose(actor.trunk.conv(x), ones)


def test_dense_sizes_replace_the_papers_one_layer():
    """cnn_dense_sizes: ReLU layers of those widths between the convolutions and the output
    layer, in actor and critic; unset, the paper's one layer (128 MinAtar, 512 Nature-CNN)."""
    minatar = gym.spaces.Box(0, 1, (10, 10, 4), bool)
    atari = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    widths = lambda net: [m.out_features for m in net.trunk.fc if isinstance(m, nn.Linear)]  # noqa: E731
    assert widths(CNNActor(minatar, 6, "categorical")) == [128] and widths(CNNCritic(atari)) == [512]
    actor, critic = CNNActor(minatar, 6, "categorical", dense=(128, 64)), CNNCritic(minatar, dense=(128, 64))
    assert widths(actor) == widths(critic) == [128, 64]
    assert actor.trunk.fc[0].in_features == 16 * 8 * 8  # 16 3×3 filters on 10×10, no padding
    assert actor.head.in_features == critic.head.in_features == 64
    assert sum(isinstance(m, nn.ReLU) for m in actor.trunk.fc) == 2
    frames = torch.randint(0, 2, (5, 10, 10, 4), dtype=torch.uint8)
    assert actor(frames).params[0].shape == (5, 6) and critic(frames).shape == (5,)


@pytest.fixture(params=[None, (8, 5)], ids=["paper", "two-dense"])
def small_actor(request):
    torch.manual_seed(1)
    space = gym.spaces.Box(0, 255, (6, 6, 2), np.uint8)
    actor = CNNActor(space, 3, "categorical", dense=request.param).double()
    obs = torch.randint(0, 256, (7, 6, 6, 2), dtype=torch.uint8)
    return actor, obs


def test_fisher_vector_products_agree_three_ways(small_actor):
    actor, obs = small_actor
    n = sum(p.numel() for p in actor.parameters())
    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    analytic = fisher_vector_product(actor, obs, method="analytic")(v)
    hessian = fisher_vector_product(actor, obs, method="kl_hessian")(v)
    functional = functorch_fvp(actor, obs)(v)
    assert torch.allclose(analytic, hessian, rtol=1e-8, atol=1e-12)
    assert torch.allclose(analytic, functional, rtol=1e-8, atol=1e-12)
    assert fisher_quadratic(actor, obs, v) == pytest.approx(float(v @ analytic), rel=1e-8)


def test_fisher_is_the_expected_outer_product_of_scores(small_actor):
    """vᵀFv = mean_s Σ_a π(a|s) (∇log π(a|s)·v)²: the seed's definition, by autograd per state."""
    actor, obs = small_actor
    params = list(actor.parameters())
    v = torch.randn(
        sum(p.numel() for p in params), dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    logp = torch.log_softmax(actor(obs).params[0], -1)
    total = 0.0
    for s in range(obs.shape[0]):
        for a in range(3):
            g = flat_grad(logp[s, a], params, retain_graph=True)
            total += float(torch.exp(logp[s, a]).detach() * (g @ v) ** 2)
    assert fisher_quadratic(actor, obs, v) == pytest.approx(total / obs.shape[0], rel=1e-8)


def test_natural_gradient_is_within_90_degrees(small_actor):
    actor, obs = small_actor
    dist = actor(obs)
    a = dist.sample(torch.Generator().manual_seed(4))
    adv = torch.randn(obs.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    g = flat_grad((dist.log_prob(a) * adv).mean(), list(actor.parameters()))
    ng = conjugate_gradient(fisher_vector_product(actor, obs, damping=1e-3), g, iters=30).x
    assert angle_degrees(ng, g) < 90.0 and float(ng @ g) > 0


def test_cnn_refuses_flat_observations_and_beta():
    with pytest.raises(ValueError, match="image observations"):
        CNNActor(gym.spaces.Box(-1, 1, (5,)), 2, "categorical")
    with pytest.raises(ValueError, match="beta"):
        CNNActor(gym.spaces.Box(0, 255, (10, 10, 1), np.uint8), 2, "beta")


@pytest.mark.parametrize("kind, act", [("categorical", 3), ("gaussian", 2)])
def test_kl_matches_torch_distributions_on_uint8_frames(kind, act):
    """KL(π_old ‖ π_new) per frame, after a parameter step, against torch.distributions."""
    torch.manual_seed(6)
    actor = CNNActor(gym.spaces.Box(0, 255, (6, 6, 2), np.uint8), act, kind).double()
    obs = torch.randint(0, 256, (7, 6, 6, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    stepped = copy.deepcopy(actor)
    with torch.no_grad():
        for p in stepped.parameters():
            p.add_(0.05 * torch.randn_like(p))
        old, new = actor(obs), stepped(obs)
    ours = kl(old, new)
    if kind == "categorical":
        ref = td.kl_divergence(td.Categorical(logits=old.params[0]), td.Categorical(logits=new.params[0]))
    else:
        (mo, lso), (mn, lsn) = old.params, new.params
        ref = td.kl_divergence(td.Normal(mo, lso.exp()), td.Normal(mn, lsn.exp())).sum(-1)
    assert ours.shape == (7,) and float(ours.min()) > 0
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
