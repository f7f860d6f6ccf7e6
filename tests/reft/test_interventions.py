import pytest
import torch

from reft_core.interventions import RED, REGISTRY, DiReFT, LoReFT, make_intervention

D, R = 16, 4


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))
    return module


def test_loreft_matches_its_equation():
    torch.manual_seed(0)
    module = _randomize(LoReFT(D, R)).eval()
    h = torch.randn(10, D)
    Rm, W, b = module.rotation.weight, module.source.weight, module.source.bias
    expected = h + (W @ h.T + b[:, None] - Rm @ h.T).T @ Rm  # h + Rᵀ(Wh + b − Rh), column form
    torch.testing.assert_close(module(h), expected, atol=1e-5, rtol=1e-5)


def test_direft_matches_its_equation():
    torch.manual_seed(0)
    module = _randomize(DiReFT(D, R)).eval()
    h = torch.randn(10, D)
    expected = h + ((module.down.weight @ h.T + module.down.bias[:, None]).T @ module.up)
    torch.testing.assert_close(module(h), expected, atol=1e-5, rtol=1e-5)


def test_red_matches_its_equation():
    torch.manual_seed(0)
    module = _randomize(RED(D)).eval()
    h = torch.randn(10, D)
    torch.testing.assert_close(module(h), module.scale * h + module.bias, atol=1e-6, rtol=1e-6)


def test_loreft_rotation_keeps_orthonormal_rows_through_training():
    torch.manual_seed(0)
    module = LoReFT(D, R)
    optimizer = torch.optim.AdamW(module.parameters(), lr=0.05)
    target = torch.randn(32, D)
    for _ in range(50):
        loss = (module(torch.randn(32, D)) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    Rm = module.rotation.weight.detach()
    moved = (module.source.weight.detach() - Rm).abs().max().item()
    assert moved > 1e-2, "training should have moved W away from R"
    torch.testing.assert_close(Rm @ Rm.T, torch.eye(R), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_new_intervention_is_exactly_the_identity(kind):
    torch.manual_seed(0)
    module = make_intervention(kind, D, R, dropout=0.5).train()
    h = torch.randn(50, D)
    assert torch.equal(module(h), h)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_dropout_hits_only_the_edit_never_the_base_stream(kind):
    torch.manual_seed(0)
    module = _randomize(make_intervention(kind, D, R, dropout=0.95)).train()
    h = torch.randn(200, D)
    out = module(h)
    # Where dropout zeroed the edit the output is h itself; were h dropped, it would be ~0.
    assert (out == h).float().mean() > 0.8
    assert (out != 0).all()


def test_loreft_computes_R_once_per_forward():
    module = LoReFT(D, R)
    calls = []
    module.rotation.parametrizations.weight[0].register_forward_hook(lambda *a: calls.append(1))
    module(torch.randn(3, D))
    assert len(calls) == 1


def test_loreft_saves_only_R_W_and_b():
    module = LoReFT(384, 4)
    # R and W are 4×384, b is 4: no d×d matrix rides along in the adapter file.
    assert sum(v.numel() for v in module.state_dict().values()) == 2 * 4 * 384 + 4
