"""Known answers for omnibind.bind.losses on toy tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from omnibind.bind.losses import (
    BatchOutputs,
    BindLoss,
    Distillation,
    GeometricConsistency,
    InfoNCE,
    IntraModalStructure,
    Matryoshka,
    SigLIP,
    mine_hard_negatives,
)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# InfoNCE ------------------------------------------------------------------------------------------


def test_infonce_aligned_orthogonal_pairs_low_temperature_is_zero():
    a = torch.eye(4) * 3.0  # unnormalised on purpose: the loss normalises
    loss = InfoNCE(init_temperature=0.01).compute(a, torch.eye(4))
    assert loss.item() < 1e-3


def test_infonce_shuffled_pairs_high_temperature_is_log_n():
    n = 6
    a, b = torch.eye(n), torch.eye(n)[torch.roll(torch.arange(n), 1)]
    loss = InfoNCE(init_temperature=1000.0).compute(a, b)
    assert loss.item() == pytest.approx(math.log(n), abs=1e-3)
    # At low temperature the same shuffle costs a lot: the positive logit is 0, a negative is 1/T.
    assert InfoNCE(init_temperature=0.01).compute(a, b).item() > 50


def test_infonce_matches_hand_formula_and_is_symmetric():
    a, b = randn(5, 8, seed=1), randn(5, 8, seed=2)
    loss = InfoNCE(init_temperature=0.1)
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / 0.1
    target = torch.arange(5)
    expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    assert loss.compute(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.compute(a, b).item() == pytest.approx(loss.compute(b, a).item(), rel=1e-6)


def test_infonce_gradient_reaches_temperature_and_clamp_holds():
    loss_fn = InfoNCE()
    assert [p for p in loss_fn.parameters()] == [loss_fn.logit_scale]
    assert loss_fn.temperature == pytest.approx(0.07, rel=1e-5)
    loss_fn.compute(randn(4, 8, seed=3), randn(4, 8, seed=4)).backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad.abs().item() > 0
    hot = InfoNCE(init_temperature=1e-4, max_logit_scale=100.0)
    assert hot.scale().item() == pytest.approx(100.0, rel=1e-5)
    frozen = InfoNCE(learnable=False)
    assert list(frozen.parameters()) == [] and "logit_scale" in dict(frozen.named_buffers())


def test_infonce_extra_negatives_increase_loss_in_a_to_b_only():
    a, b, extra = randn(4, 8, seed=5), randn(4, 8, seed=6), randn(3, 8, seed=7)
    loss = InfoNCE(init_temperature=0.1)
    plain, harder = loss.compute(a, b), loss.compute(a, b, extra_negatives_b=extra)
    assert harder.item() > plain.item()
    # By hand: a->b over [b; extra], b->a over a only.
    an, bn, en = (F.normalize(x, dim=1) for x in (a, b, extra))
    t = torch.arange(4)
    expected = 0.5 * (
        F.cross_entropy(an @ torch.cat([bn, en]).T / 0.1, t) + F.cross_entropy(bn @ an.T / 0.1, t)
    )
    assert harder.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError):
        loss.compute(a, b, extra_negatives_b=randn(3, 5))


# SigLIP -------------------------------------------------------------------------------------------


def test_siglip_closed_form_n2():
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    b = torch.tensor([[0.8, 0.6], [0.0, 2.0]])  # second row unnormalised: unit vector (0, 1)
    t, bias = 10.0, -10.0
    s = [[0.8, 0.0], [0.6 * 0.8 + 0.8 * 0.6, 0.8]]  # a_i · b_j of the unit vectors

    def neg_log_sigmoid(x: float) -> float:
        return math.log1p(math.exp(-x))

    expected = sum(
        neg_log_sigmoid((1.0 if i == j else -1.0) * (t * s[i][j] + bias)) for i in range(2) for j in range(2)
    ) / 2  # the paper normalises by n, not by the n^2 pairs
    assert SigLIP(init_temperature=t, init_bias=bias).compute(a, b).item() == pytest.approx(expected, rel=1e-5)


def test_siglip_aligned_lower_than_shuffled_and_learns_t_and_bias():
    a = randn(6, 16, seed=8)
    b = a + 0.05 * randn(6, 16, seed=9)
    loss = SigLIP()
    assert loss.compute(a, b).item() < loss.compute(a, b[torch.roll(torch.arange(6), 1)]).item()
    loss.compute(a, b).backward()
    assert loss.t_prime.grad.abs().item() > 0 and loss.bias.grad.abs().item() > 0
    assert loss.t_prime.exp().item() == pytest.approx(10.0) and loss.bias.item() == -10.0


def test_siglip_extra_negatives_add_negative_terms():
    a, b, extra = randn(3, 4, seed=10), randn(3, 4, seed=11), randn(2, 4, seed=12)
    loss = SigLIP(init_temperature=5.0, init_bias=-2.0)
    logits_extra = 5.0 * F.normalize(a, dim=1) @ F.normalize(extra, dim=1).T - 2.0
    expected = loss.compute(a, b).item() + (-F.logsigmoid(-logits_extra).sum() / 3).item()
    assert loss.compute(a, b, extra_negatives_b=extra).item() == pytest.approx(expected, rel=1e-5)


# Matryoshka ---------------------------------------------------------------------------------------


def test_matryoshka_is_average_of_base_on_prefixes():
    a, b = randn(6, 8, seed=13), randn(6, 8, seed=14)
    base = InfoNCE(init_temperature=0.1)
    by_hand = sum(base.compute(a[:, :k], b[:, :k]) for k in (2, 4, 8)) / 3
    assert Matryoshka(base, (2, 4, 8))(BatchOutputs(media=b, texts=a)).item() == pytest.approx(by_hand.item(), rel=1e-6)
    # The prefix really is re-normalised: scaling the tail of a changes nothing on dims 2 and 4.
    a_scaled = torch.cat([a[:, :4], 10 * a[:, 4:]], dim=1)
    scaled = base.compute(a_scaled[:, :4], b[:, :4]).item()
    assert scaled == pytest.approx(base.compute(a[:, :4], b[:, :4]).item(), rel=1e-6)


def test_matryoshka_weights_normalised_extras_truncated_and_params_shared():
    a, b, extra = randn(5, 8, seed=15), randn(5, 8, seed=16), randn(4, 8, seed=17)
    base = InfoNCE(init_temperature=0.1)
    nested = Matryoshka(base, (4, 8), dim_weights=(1.0, 3.0))
    by_hand = 0.25 * base.compute(a[:, :4], b[:, :4], extra[:, :4]) + 0.75 * base.compute(a, b, extra)
    assert nested(BatchOutputs(media=b, texts=a, negatives=extra)).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert list(nested.parameters()) == [base.logit_scale]
    assert nested.name == "matryoshka_infonce" and nested.weight == 1.0


def test_matryoshka_truncates_the_teacher_for_a_distillation_base():
    student, teacher = randn(4, 8, seed=30), randn(4, 8, seed=31)
    nested = Matryoshka(Distillation("cosine"), (2, 8))
    assert nested.uses_teacher
    batch = BatchOutputs(media=student, texts=randn(4, 8, seed=32), teacher=teacher)
    cosine = Distillation("cosine")
    by_hand = 0.5 * cosine.compute(student[:, :2], teacher[:, :2]) + 0.5 * cosine.compute(student, teacher)
    assert nested(batch).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_matryoshka_rejects_dims_larger_than_d():
    with pytest.raises(ValueError):
        Matryoshka(InfoNCE(), (4, 16))(BatchOutputs(media=randn(3, 8), texts=randn(3, 8)))
    with pytest.raises(ValueError):
        Matryoshka(InfoNCE(), (4, 8), dim_weights=(1.0,))
    with pytest.raises(ValueError):
        Matryoshka(InfoNCE(), ())


# Distillation -------------------------------------------------------------------------------------


def test_distillation_cosine_zero_when_equal_one_when_orthogonal():
    x = randn(4, 6, seed=18)
    assert Distillation("cosine").compute(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert Distillation("cosine").compute(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 5.0]])).item() == 1.0


def test_distillation_mse_hand_computed():
    # (3, 4) -> (0.6, 0.8); teacher (1, 0); squared differences 0.16 and 0.64 -> mean 0.4.
    mse = Distillation("mse")
    assert mse.compute(torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0, 0.0]])).item() == pytest.approx(0.4)
    # Orthogonal unit vectors: (1, -1) -> mean of 1 and 1.
    assert mse.compute(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(1.0)


def test_distillation_teacher_is_detached():
    student, teacher = randn(3, 4, seed=19).requires_grad_(), randn(3, 4, seed=20).requires_grad_()
    for kind in Distillation.kinds:
        Distillation(kind).compute(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None
    with pytest.raises(ValueError):
        Distillation("l1")


def test_contrastive_distillation_minimal_at_teacher():
    teacher = randn(6, 8, seed=21)
    # T = 0.5 keeps the target soft, so every perturbation shows; at small T the target is nearly
    # one-hot and a perturbation that keeps each row's nearest teacher costs almost nothing.
    loss = Distillation("contrastive", temperature=0.5)
    at_teacher = loss.compute(teacher.clone(), teacher)
    assert at_teacher.item() == pytest.approx(0.0, abs=1e-6)
    for seed in range(5):
        assert loss.compute(teacher + 0.3 * randn(6, 8, seed=100 + seed), teacher).item() > at_teacher.item() + 1e-4
        assert Distillation("contrastive").compute(teacher + 0.3 * randn(6, 8, seed=100 + seed), teacher).item() > 0
    student = teacher.clone().requires_grad_()
    loss.compute(student, teacher).backward()
    assert student.grad.abs().max().item() < 1e-5  # stationary point


# Latent-structure regularisers --------------------------------------------------------------------


def test_intra_modal_structure_zero_when_equal_positive_otherwise():
    feats = randn(5, 8, seed=22)
    reg = IntraModalStructure()
    assert reg.compute(feats.clone(), feats).item() == pytest.approx(0.0, abs=1e-7)
    out = randn(5, 3, seed=23).requires_grad_()  # another width than the backbone's
    value = reg.compute(out, feats.requires_grad_())
    assert value.item() > 0
    value.backward()
    assert out.grad is not None and feats.grad is None
    # Scale of the inputs does not matter, only the cosine structure.
    assert reg.compute(2.0 * feats.detach(), feats.detach()).item() == pytest.approx(0.0, abs=1e-7)


def test_geometric_consistency_zero_when_equal_and_hand_computed():
    reg = GeometricConsistency()
    x = randn(5, 4, seed=24)
    assert reg.compute(x, x.clone()).item() == pytest.approx(0.0, abs=1e-7)
    # a = I, b = [(1, 0), (1, 1)/sqrt 2]: S_aa - S_bb has two off-diagonal entries -1/sqrt 2 -> 0.25;
    # S_ab = [[1, 1/sqrt 2], [0, 1/sqrt 2]] is asymmetric by 1/sqrt 2 twice -> 0.25.
    a, b = torch.eye(2), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert reg.compute(a, b).item() == pytest.approx(0.5, rel=1e-5)
    # A rotation keeps S_bb = S_aa but makes S_ab asymmetric, so only the second term is left.
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    y = randn(4, 2, seed=25)
    sab = F.normalize(y, dim=1) @ F.normalize(y @ rot, dim=1).T
    assert reg.compute(y, y @ rot).item() == pytest.approx(((sab - sab.T) ** 2).mean().item(), rel=1e-5)


# Hard negatives -----------------------------------------------------------------------------------


def test_mine_hard_negatives_hand_built():
    deg = torch.tensor([0.0, 10.0, 20.0, 20.0, 90.0, 180.0]) * math.pi / 180
    pool = torch.stack([torch.cos(deg), torch.sin(deg)], dim=1)  # items 2 and 3 are the same vector
    queries = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # at 0 and 90 degrees
    got = mine_hard_negatives(queries, pool, torch.tensor([0, 4]), k=3)
    assert got.dtype == torch.long
    # Query 0 (positive 0 excluded): 10 deg, then the tie at 20 deg broken by index -> 1, 2, 3.
    # Query 1 (positive 4 excluded): 20 deg twice (2, 3), then 10 deg (1).
    assert got.tolist() == [[1, 2, 3], [2, 3, 1]]
    # No positive in the pool (-1): the nearest item itself is a negative.
    assert mine_hard_negatives(queries[:1], pool, torch.tensor([-1]), k=2).tolist() == [[0, 1]]
    with pytest.raises(ValueError):
        mine_hard_negatives(queries, pool, torch.tensor([0, 4]), k=6)


# The batch interface the trainer uses -------------------------------------------------------------


def test_each_term_reads_its_fields_from_the_batch():
    media, texts, teacher = randn(5, 8, seed=40), randn(5, 8, seed=41), randn(5, 8, seed=42)
    negatives, features = randn(3, 8, seed=43), randn(5, 12, seed=44)
    batch = BatchOutputs(media, texts, teacher=teacher, negatives=negatives, features=features)
    info, sig = InfoNCE(init_temperature=0.1), SigLIP()
    assert torch.equal(info(batch), info.compute(texts, media, negatives))  # texts query media
    assert torch.equal(sig(batch), sig.compute(texts, media, negatives))
    assert torch.equal(Distillation("mse")(batch), Distillation("mse").compute(media, teacher))
    assert torch.equal(IntraModalStructure()(batch), IntraModalStructure().compute(media, features))
    assert torch.equal(GeometricConsistency()(batch), GeometricConsistency().compute(media, texts))
    with pytest.raises(ValueError, match="teacher"):
        Distillation()(BatchOutputs(media, texts))
    with pytest.raises(ValueError, match="features"):
        IntraModalStructure()(BatchOutputs(media, texts))


def test_batch_features_are_computed_once_on_first_use_and_prefix_shares_them():
    calls = []

    def features() -> torch.Tensor:
        calls.append(1)
        return randn(4, 6, seed=45)

    batch = BatchOutputs(randn(4, 8, seed=46), randn(4, 8, seed=47), negatives=randn(2, 8, seed=48),
                         features=features)
    assert calls == []  # a batch no term asks features of never computes them
    cut = batch.prefix(3)
    assert cut.media.shape == (4, 3) and cut.texts.shape == (4, 3) and cut.negatives.shape == (2, 3)
    assert cut.teacher is None and cut.features.shape == (4, 6)  # features are the backbone's: not cut
    assert batch.features is cut.features and calls == [1]


def test_bind_loss_weight_name_and_a_user_defined_term():
    class Spread(BindLoss):
        name = "spread"

        def forward(self, batch: BatchOutputs) -> torch.Tensor:
            m = F.normalize(batch.media, dim=-1)
            return (m @ m.T).pow(2).mean()

    term = Spread(weight=0.3)
    assert (term.name, term.weight, term.uses_teacher) == ("spread", 0.3, False)
    assert Spread(name="other").name == "other" and InfoNCE(weight=2.0, name="nce").name == "nce"
    assert term(BatchOutputs(torch.eye(3), torch.eye(3))).item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        Spread(weight=-1.0)
    with pytest.raises(NotImplementedError):
        BindLoss()(BatchOutputs(torch.eye(2), torch.eye(2)))
    assert Distillation.uses_teacher and not InfoNCE.uses_teacher
