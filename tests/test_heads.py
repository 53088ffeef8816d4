import math

import pytest
import torch

from omnibind.errors import SpaceError
from omnibind.heads import ConSEHead, IdentityHead, LinearHead, MLPHead, build_head


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_conse_keeps_top_k_and_mixes_class_embeddings(temperature):
    classes = torch.eye(4)  # class c embeds to the unit vector e_c
    head = ConSEHead.from_classes("logits", classes, top_k=2, temperature=temperature)
    logits = torch.tensor([[3.0, 2.0, -5.0, 1.0]])
    probs = head.class_probabilities({"logits": logits})
    p = torch.softmax(logits / temperature, -1)[0]
    expected = torch.tensor([p[0], p[1], 0.0, 0.0]) / (p[0] + p[1])
    # by hand: the kept weights are softmax((3, 2) / T): 1 / (1 + e^(-1/T)) on class 0
    assert expected[0].item() == pytest.approx(1 / (1 + math.exp(-1 / temperature)), abs=1e-6)
    assert torch.allclose(probs[0], expected, atol=1e-6)
    assert torch.allclose(head({"logits": logits})[0], expected, atol=1e-6)  # probs @ eye


def test_conse_one_hot_class_gives_its_embedding():
    classes = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    head = ConSEHead.from_classes("logits", classes, top_k=1)
    out = head({"logits": torch.tensor([[0.0, 0.0, 9.0, 0.0, 0.0]])})
    assert torch.allclose(out[0], classes[2], atol=1e-6)


def test_conse_exemplar_mode_uses_prototype_cosines():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    captions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    head = ConSEHead.from_classes("embedding", captions, top_k=1, temperature=0.1, prototypes=protos)
    out = head({"embedding": torch.tensor([[0.1, 5.0], [3.0, 0.2]])})
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("head", [
    IdentityHead("embedding", 6),
    LinearHead("embedding", 6, 4),
    MLPHead("embedding", 6, 4, hidden=8),
    ConSEHead.from_classes("embedding", torch.randn(3, 4), top_k=2, prototypes=torch.randn(3, 6)),
])
def test_heads_rebuild_from_config_and_state(head):
    rebuilt = build_head(head.config())
    rebuilt.load_state_dict(head.state_dict())
    x = {"embedding": torch.randn(5, 6)}
    head.eval(), rebuilt.eval()
    assert torch.allclose(head(x), rebuilt(x))
    assert rebuilt(x).shape == (5, head.out_dim)


def test_unknown_head_kind_is_a_space_error():
    with pytest.raises(SpaceError, match="unknown head kind"):
        build_head({"kind": "transformer"})
    with pytest.raises(SpaceError, match="bad config"):
        build_head({"kind": "linear", "input_key": "x"})


def test_residual_head_starts_exactly_at_the_bridge_and_round_trips():
    from omnibind.heads import ResidualHead

    bridge = ConSEHead.from_classes("logits", torch.randn(7, 5), top_k=3)
    head = ResidualHead.around(bridge, "pooled", 12)
    feats = {"logits": torch.randn(4, 7), "pooled": torch.randn(4, 12)}
    expected = torch.nn.functional.normalize(bridge(feats), dim=-1)
    assert torch.equal(head(feats), expected)
    assert not any(p.requires_grad for p in head.bridge.parameters())
    trainable = [p for p in head.parameters() if p.requires_grad]
    assert trainable and all(p is not None for p in trainable)
    with torch.no_grad():
        head.correction[-1].bias.fill_(0.1)
    rebuilt = build_head(head.config())
    rebuilt.load_state_dict(head.state_dict())
    assert torch.allclose(rebuilt(feats), head(feats))
    assert torch.allclose(rebuilt(feats), expected + 0.1)


def test_residual_scale_is_wise_ft_between_the_bridge_and_the_trained_correction():
    """scale 0 is the bridge, scale 1 the trained head, and scale s is exactly the head whose
    correction's last layer was interpolated s of the way from zero (WiSE-FT), and it round-trips."""
    from omnibind.errors import SpaceError
    from omnibind.heads import ResidualHead

    torch.manual_seed(0)
    bridge = ConSEHead.from_classes("logits", torch.randn(7, 5), top_k=3)
    trained = ResidualHead.around(bridge, "pooled", 12)
    with torch.no_grad():
        for p in trained.correction.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    feats = {"logits": torch.randn(4, 7), "pooled": torch.randn(4, 12)}
    base = torch.nn.functional.normalize(bridge(feats), dim=-1)
    half = build_head({**trained.config(), "scale": 0.5})
    half.load_state_dict(trained.state_dict())
    interpolated = build_head(trained.config())
    interpolated.load_state_dict(trained.state_dict())
    with torch.no_grad():
        interpolated.correction[-1].weight.mul_(0.5)
        interpolated.correction[-1].bias.mul_(0.5)
    assert torch.allclose(half(feats), interpolated(feats), atol=1e-6)
    assert not torch.allclose(half(feats), trained(feats), atol=1e-3)
    zero = build_head({**trained.config(), "scale": 0.0})
    zero.load_state_dict(trained.state_dict())
    assert torch.allclose(zero(feats), base, atol=1e-6)
    assert build_head(half.config()).scale == 0.5
    with pytest.raises(SpaceError, match="scale"):
        build_head({**trained.config(), "scale": 1.5})
