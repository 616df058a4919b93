import math

import pytest
import torch

from whichvoice.models import SeedCNN, build_model, model_names, model_spec


def test_registry_lists_and_rejects() -> None:
    from whichvoice.cli.common import MODEL_NAMES

    assert {"talk-cnn", "seed", "voicenet"} <= set(model_names())
    assert sorted(MODEL_NAMES) == model_names()  # what the CLI offers without importing torch
    with pytest.raises(ValueError, match="seed, talk-cnn, voicenet"):
        model_spec("resnet9000")
    # seed, the talk's network's first name, is an alias: runs that record it still load
    assert model_spec("seed") is model_spec("talk-cnn") and model_spec("seed").name == "talk-cnn"


def test_seed_is_the_talks_network_layer_for_layer() -> None:
    net = build_model("seed", (3, 140, 140), 8)
    assert isinstance(net, SeedCNN)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (3, 3), (0, 0)),
        (32, 32, (3, 3), (0, 0)),
    ]
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout", "Flatten"]
    assert net.features[5].p == 0.25
    assert net.output.in_features == 32 * 68 * 68 and net.output.out_features == 8
    # MXNet Xavier(magnitude=2.24, uniform, avg): |w| <= sqrt(2.24 / ((fan_in + fan_out) / 2))
    bound = math.sqrt(2.24 / ((3 * 9 + 32 * 9) / 2))
    w = convs[0].weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert float(convs[0].bias.detach().abs().max()) == 0.0
    assert net(torch.rand(2, 3, 140, 140)).shape == (2, 8)


def test_voicenet_embeds_on_the_unit_sphere_and_classifies() -> None:
    net = build_model("voicenet", (64, 200), 8).eval()
    x = torch.randn(4, 64, 200)
    emb = net.embed(x)
    assert emb.shape == (4, net.embedder.dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    assert net(x).shape == (4, 8)
    # length-independent: statistics pooling takes any number of frames
    assert net.embed(torch.randn(2, 64, 333)).shape == (2, net.embedder.dim)


@pytest.mark.parametrize("name", ["voicenet-aam", "voicenet-aam-wide"])
def test_margin_models_embed_and_widen_the_target_angle(name: str) -> None:
    net = build_model(name, (64, 200), 5).eval()
    x = torch.randn(3, 64, 200)
    assert torch.allclose(net.embed(x).norm(dim=1), torch.ones(3), atol=1e-5)
    labels = torch.tensor([0, 1, 2])
    plain, margin = net(x), net(x, labels)
    rows = torch.arange(3)
    # the margin lowers only the target class's logit, as additive angular margin does
    assert (margin[rows, labels] < plain[rows, labels]).all()
    others = torch.ones_like(plain, dtype=torch.bool)
    others[rows, labels] = False
    assert torch.equal(margin[others], plain[others])


def test_the_margin_warms_up() -> None:
    from whichvoice.train import margin_at

    margins = [margin_at(e, 50, 0.2) for e in range(50)]
    assert margins[0] == pytest.approx(0.02) and margins[9] == pytest.approx(0.2)
    assert margins == sorted(margins) and max(margins) == pytest.approx(0.2)


def test_margin_head_stays_float32_under_bf16_autocast() -> None:
    """On CUDA the training loop runs under bf16 autocast; the margin head must not: an
    embedding on its class centre (cosine 1) would get an infinite acos gradient."""
    from torch.nn import functional as F

    from whichvoice.models import CosineHead

    torch.manual_seed(0)
    head = CosineHead(8, 3, margin=0.2)
    emb = F.normalize(torch.randn(4, 8), dim=1)
    emb[0] = F.normalize(head.weight[0].detach(), dim=0)  # exactly on voice 0's centre
    emb.requires_grad_()
    labels = torch.tensor([0, 1, 2, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(emb, labels)
        loss = F.cross_entropy(logits, labels)
    assert logits.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.slow  # synthesis or training
def test_an_ensemble_trains_each_member_and_scores_their_mean_cosine() -> None:
    from whichvoice.train.schedule import margin_heads

    torch.manual_seed(0)
    net = build_model("voicenet-aam-wide-x2", (64, 200), 5)
    a, b = net.members
    # members start from different weights, each with its own margin head
    assert not torch.equal(a.embedder.frames[0][0].weight, b.embedder.frames[0][0].weight)
    assert [h for h, _ in margin_heads(net)] == [a.head, b.head]
    assert [m for _, m in margin_heads(net)] == [0.2, 0.2]
    x, labels = torch.randn(3, 64, 200), torch.tensor([0, 1, 4])
    net.train()
    assert net(x, labels).shape == (3, 5, 2)  # one set of logits a member: one loss each
    net.eval()
    assert torch.allclose(net(x), (a(x) + b(x)) / 2)
    e, f = net.embed(x), net.embed(torch.randn(3, 64, 200))
    assert e.shape == (3, 2 * a.embedder.dim)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    mean_cosine = (
        (a.embed(x) * a.embed(x.flip(0))).sum(1) + (b.embed(x) * b.embed(x.flip(0))).sum(1)
    ) / 2
    assert torch.allclose((e * e.flip(0)).sum(1), mean_cosine, atol=1e-5)
    assert not torch.allclose(e, f)
