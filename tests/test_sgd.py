"""The loop's CPU SGD (dbrepro.train.sgd): torch.optim.SGD's update bit for bit, its state_dict both ways,
a whole run trained identically, and no torch._dynamo import in a fresh process."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dbrepro.train import fit
from dbrepro.train import loop
from dbrepro.train.sgd import SGD

from test_train import toy_config, toy_faces


def two_models(seed=0):
    torch.manual_seed(seed)
    a = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.PReLU(), torch.nn.Linear(7, 3))
    b = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.PReLU(), torch.nn.Linear(7, 3))
    b.load_state_dict(a.state_dict())
    return a, b


def step(model, opt, x, skip_grad_of=None):
    opt.zero_grad(set_to_none=True)
    model(x).pow(2).sum().backward()
    if skip_grad_of is not None:  # a parameter without a gradient this step (a frozen or unused one)
        skip_grad_of.grad = None
    opt.step()


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 5e-4), (0.0, 5e-4), (0.9, 0.0), (0.0, 0.0)])
def test_every_update_equals_torch_sgd_bit_for_bit(momentum, weight_decay):
    ours_model, torch_model = two_models()
    ours = SGD(ours_model.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    ref = torch.optim.SGD(torch_model.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(1)
    for i in range(12):
        if i == 6:  # the schedule's drop, as the loop sets it
            for o in (ours, ref):
                for group in o.param_groups:
                    group["lr"] = 0.01
        x = torch.randn(4, 5, generator=g)
        step(ours_model, ours, x, skip_grad_of=ours_model[1].weight if i == 3 else None)
        step(torch_model, ref, x, skip_grad_of=torch_model[1].weight if i == 3 else None)
        for (name, a), b in zip(ours_model.named_parameters(), torch_model.parameters()):
            assert torch.equal(a, b), (i, name)


def test_hand_computed_update():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SGD([w], lr=0.5, momentum=0.9, weight_decay=0.1)
    w.grad = torch.tensor([0.2, 0.4])
    opt.step()  # d = g + 0.1 w = (0.3, 0.2); b = d; w -= 0.5 b
    assert torch.allclose(w, torch.tensor([0.85, -2.1]))
    w.grad = torch.tensor([0.0, 0.0])
    opt.step()  # d = 0.1 w = (0.085, -0.21); b = 0.9 (0.3, 0.2) + d = (0.355, -0.03); w -= 0.5 b
    assert torch.allclose(w, torch.tensor([0.6725, -2.085]))


@pytest.mark.parametrize("direction", ["torch to ours", "ours to torch"])
def test_state_dict_round_trips_with_torch_sgd(direction):
    first_model, second_model = two_models()
    make = {"ours": lambda m: SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4),
            "torch": lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)}
    src, dst = direction.split(" to ")
    first = make[src](first_model)
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(4, 5, generator=g) for _ in range(6)]
    for x in xs[:3]:
        step(first_model, first, x)
    second_model.load_state_dict(first_model.state_dict())
    second = make[dst](second_model)
    # a checkpoint written by one optimiser, resumed by the other (a copy, as torch.save and torch.load make
    # it: torch.optim.SGD's load keeps the tensors it is given, so the two would share momentum buffers)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    assert second.param_groups[0]["lr"] == 0.1 and second.param_groups[0]["momentum"] == 0.9
    for x in xs[3:]:
        step(first_model, first, x)
        step(second_model, second, x)
    for a, b in zip(first_model.parameters(), second_model.parameters()):
        assert torch.equal(a, b)


def test_loaded_state_is_a_copy_and_a_mismatched_one_is_refused():
    model, _ = two_models()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    step(model, opt, torch.randn(4, 5))
    saved = opt.state_dict()
    other = SGD(model.parameters(), lr=0.1, momentum=0.9)
    other.load_state_dict(saved)
    buf = saved["state"][0]["momentum_buffer"]
    assert other.state[next(model.parameters())]["momentum_buffer"].data_ptr() != buf.data_ptr()
    with pytest.raises(ValueError, match="one param group of 2 parameters"):
        SGD(model[0].parameters(), lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)


def test_a_run_trains_bit_identically_with_torch_sgd(monkeypatch):
    """The whole loop (momentum, weight decay, the schedule's drops, a centre term) with this class and with
    torch.optim.SGD: the same weights and losses, so runs cached before the switch are exactly what it trains."""
    data = toy_faces()
    cfg = toy_config(epochs=3, milestones=(1, 2), terms={"center": {"weight": 0.01}})
    ours = fit(cfg, data, progress=False)
    assert isinstance(loop.make_optimizer(ours.module, cfg, torch.device("cpu")), SGD)
    monkeypatch.setattr(loop, "make_optimizer", lambda module, cfg, device: torch.optim.SGD(
        module.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay))
    theirs = fit(cfg, data, progress=False)
    for (k, a), (_, b) in zip(ours.module.state_dict().items(), theirs.module.state_dict().items()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in ours.history] == [h["loss"] for h in theirs.history]


def test_a_cpu_run_never_imports_torch_dynamo():
    code = ("import sys\n"
            "sys.path.insert(0, 'tests')\n"
            "from test_train import toy_config, toy_faces\n"
            "from dbrepro.train import fit\n"
            "fit(toy_config(epochs=1), toy_faces(), progress=False)\n"
            "print('torch._dynamo' in sys.modules)\n")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
