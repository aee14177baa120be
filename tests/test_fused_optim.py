import pytest
import torch

from harness.hyperparams import build_optimizer
from harness.trainers.fused_optim import FUSED_OPTIMIZERS, build_fused_optimizer

SHAPES = [(6, 1, 5, 5), (6,), (10, 84)]
LR = [0.1, 0.01, 0.003, 0.05]
MOMENTUM = [0.9, 0.0, 0.5, 0.99]
WEIGHT_DECAY = [0.0, 1e-3, 0.1, 0.0]
K = len(LR)


def members(dtype, seed=0):
    torch.manual_seed(seed)
    return [[torch.randn(s, dtype=dtype, requires_grad=True) for s in SHAPES]
            for _ in range(K)]


def flatten(member_params):
    return torch.stack([torch.cat([p.detach().reshape(-1) for p in m]) for m in member_params])


def set_grads(member_params, grads):
    for k, params in enumerate(member_params):
        offset = 0
        for p in params:
            p.grad = grads[k, offset : offset + p.numel()].view(p.shape).clone()
            offset += p.numel()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(FUSED_OPTIMIZERS))
def test_each_member_follows_torch_optim_over_many_steps(name, dtype):
    reference = members(dtype)
    optimizers = [build_optimizer(params, {"optimizer": name, "lr": LR[k], "momentum": MOMENTUM[k],
                                                   "weight_decay": WEIGHT_DECAY[k]})
                  for k, params in enumerate(reference)]
    flat = flatten(reference)
    fused = build_fused_optimizer(name, flat, LR, MOMENTUM, WEIGHT_DECAY)
    active = torch.ones(K, dtype=torch.bool)
    grads_rng = torch.Generator().manual_seed(1)
    for _ in range(50):
        grads = torch.randn(flat.shape, generator=grads_rng, dtype=dtype)
        set_grads(reference, grads)
        for optimizer in optimizers:
            optimizer.step()
        assert fused.step(grads, active).all()
    tolerance = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(flat, flatten(reference), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", list(FUSED_OPTIMIZERS))
def test_masked_and_non_finite_members_are_not_updated_and_touch_no_other(name):
    reference = members(torch.float64)
    optimizers = [build_optimizer(params, {"optimizer": name, "lr": LR[k], "momentum": MOMENTUM[k],
                                                   "weight_decay": WEIGHT_DECAY[k]})
                  for k, params in enumerate(reference)]
    flat = flatten(reference)
    before = flat.clone()
    fused = build_fused_optimizer(name, flat, LR, MOMENTUM, WEIGHT_DECAY)
    active = torch.tensor([True, False, True, True])
    grads_rng = torch.Generator().manual_seed(2)
    for step in range(10):
        grads = torch.randn(flat.shape, generator=grads_rng, dtype=torch.float64)
        if step >= 3:
            grads[3, 5] = float("nan")  # member 3 breaks at its 4th step
        set_grads(reference, grads)
        for k in (0, 2):
            optimizers[k].step()
        applied = fused.step(grads, active)
        assert applied.tolist() == [True, False, True, step < 3]
        active = applied
        if step == 2:
            member3 = flat[3].clone()  # its last finite update
    torch.testing.assert_close(flat[[0, 2]], flatten(reference)[[0, 2]], rtol=1e-12,
                               atol=1e-12)
    assert torch.equal(flat[1], before[1])
    assert torch.equal(flat[3], member3) and torch.isfinite(flat).all()


def test_one_value_per_member_and_known_names_are_required():
    flat = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="one value per member"):
        build_fused_optimizer("sgd", flat, [0.1, 0.2], [0.0] * 3, [0.0] * 3)
    with pytest.raises(ValueError, match="no fused form.*sgd, adam"):
        build_fused_optimizer("lbfgs", flat, [0.1] * 3, [0.0] * 3, [0.0] * 3)
