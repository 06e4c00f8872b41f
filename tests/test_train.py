"""The training loop: learning, resume bit-identical, NaN stop, DDP == one process, the loss seam."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from dbrepro import runs
from dbrepro.data.base import TensorFaces
from dbrepro.train import (CheckpointMismatchError, NonFiniteLossError, TrainConfig, build, fit,
                           load_trained)


def toy_faces(num_classes=8, per_class=16, size=16, seed=0) -> TensorFaces:
    """Each class a fixed random colour pattern plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(num_classes, 3, size, size, generator=g)
    labels = np.repeat(np.arange(num_classes), per_class)
    noise = 0.25 * torch.randn(len(labels), 3, size, size, generator=g)
    images = ((protos[labels] + noise).clamp(0, 1) * 255).to(torch.uint8)
    meta = pd.DataFrame({"identity": labels})
    return TensorFaces(images, labels, num_classes, meta, name="toy")


def toy_config(**kw) -> TrainConfig:
    base = dict(data={"kind": "toy"}, backbone="small", backbone_kwargs={"width": (8, 8, 16)}, embedding_size=16,
                image_size=16, head="softmax", epochs=3, batch_size=32, lr=0.05, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DBREPRO_CACHE", str(tmp_path))
    return tmp_path


def test_loss_goes_down_and_run_completes(cache):
    data = toy_faces()
    cfg = toy_config(epochs=6, milestones=(4, 5), lr=0.1)
    run = runs.get_run(cfg.to_dict())
    result = fit(cfg, data, run=run, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert run.complete and run.metrics()["epochs_done"] == 6
    assert [h["lr"] for h in result.history] == pytest.approx([0.1] * 4 + [0.01, 0.001])
    module, cfg2 = load_trained(run)
    assert cfg2 == cfg
    x = torch.zeros(2, 3, 16, 16)
    assert torch.equal(module.model(x), result.model(x))


def test_schedule_scales_the_papers_milestones():
    cfg = toy_config(epochs=15)
    assert cfg.schedule == (5, 8, 11)
    assert [cfg.lr_at(e) for e in (0, 4, 5, 8, 11, 14)] == pytest.approx([0.05, 0.05, 0.005, 5e-4, 5e-5, 5e-5])


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_resume_is_bit_identical(cache, cpu_bf16):
    data = toy_faces()
    # dropout, flips, centre updates and contrastive negative draws all carry randomness or state
    cfg = toy_config(terms={"center": {"weight": 0.01}, "contrastive": {"weight": 0.1}},
                     backbone_kwargs={"width": (8, 8, 16), "dropout": 0.2}, cpu_bf16=cpu_bf16)
    straight = fit(cfg, data, progress=False)

    run = runs.get_run(cfg.to_dict())
    fit(cfg, data, run=run, progress=False, stop_after_epoch=1)  # "interrupted" after epoch 1
    assert run.checkpoint_path.exists() and not run.complete
    resumed = fit(cfg, data, run=run, progress=False)
    assert run.complete
    for (k, a), (_, b) in zip(straight.module.state_dict().items(), resumed.module.state_dict().items()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_probe_loss_is_recorded_and_changes_nothing(monkeypatch):
    """Every epoch records the loss on a fixed probe of training images; the probe restores the objective's
    buffers (contrastive draw counter, centres) and draws from no training generator, so the run trains
    bit-identically to one whose probe is switched off."""
    from dbrepro.train import loop

    data = toy_faces()
    cfg = toy_config(terms={"center": {"weight": 0.01}, "contrastive": {"weight": 0.1}},
                     backbone_kwargs={"width": (8, 8, 16), "dropout": 0.2})
    probed = fit(cfg, data, progress=False)
    assert all(np.isfinite(h["probe_loss"]) and h["probe_loss"] > 0 for h in probed.history)
    # the probe sees the model at the end of the epoch: after the last (lr 0.05) epoch it is below the first's
    assert probed.history[-1]["probe_loss"] < probed.history[0]["probe_loss"]
    # the same images every time: measured twice on the trained model, the same value
    state = loop.start(cfg, data.num_classes, torch.device("cpu"))
    state.module.load_state_dict(probed.module.state_dict())
    info = loop.init_distributed(torch.device("cpu"))
    labels = np.asarray(data.labels)
    before = {k: v.clone() for k, v in state.module.state_dict().items()}
    assert loop.probe_loss(state, data, labels, torch.device("cpu"), info) == \
        loop.probe_loss(state, data, labels, torch.device("cpu"), info)
    for k, v in state.module.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert state.module.training

    monkeypatch.setattr(loop, "probe_loss", lambda *a, **k: 0.0)
    unprobed = fit(cfg, data, progress=False)
    for (k, a), (_, b) in zip(probed.module.state_dict().items(), unprobed.module.state_dict().items()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in probed.history] == [h["loss"] for h in unprobed.history]


def test_probe_loss_normalises_with_batch_statistics_and_the_settled_objective():
    """The probe is a function of the weights alone: BN normalises with the probe batch's statistics (moving
    the running averages changes nothing), and SphereFace is measured at its annealing floor whatever its
    iteration (both restored afterwards)."""
    from dbrepro.train import loop

    data = toy_faces()
    cfg = toy_config(head="sphereface", head_kwargs={})
    state = loop.start(cfg, data.num_classes, torch.device("cpu"))
    info = loop.init_distributed(torch.device("cpu"))
    labels = np.asarray(data.labels)
    probe = lambda: loop.probe_loss(state, data, labels, torch.device("cpu"), info)
    first = probe()
    bns = [m for m in state.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns
    for m in bns:
        m.running_mean.add_(3.0)
        m.running_var.mul_(7.0)
    head = state.objective.head
    head.iteration.fill_(3)  # lambda ~ 735: almost a plain softmax
    assert probe() == pytest.approx(first, rel=1e-6)
    assert int(head.iteration) == 3 and all(float(m.running_var.mean()) > 0 for m in bns)
    # the settled loss is SphereFace's at lambda_min: by hand, on the same batches in the same BN mode
    sampler = loop.epoch_sampler(cfg, labels, loop.PROBE_EPOCH, info)
    batches = [idx for _, idx in zip(range(loop.PROBE_BATCHES), sampler)]
    saved = {k: v.clone() for k, v in state.module.state_dict().items()}
    head.iteration.fill_(10_000)
    state.module.eval()
    for m in bns:
        m.train()
    with torch.no_grad():
        by_hand = np.mean([float(state.module(loop.normalize_images(x), y)[0]) for x, y in loop.batches(data, batches)])
    state.module.load_state_dict(saved)
    assert first == pytest.approx(by_hand, rel=1e-6)


def test_checkpoint_from_another_config_is_refused(cache):
    data = toy_faces()
    cfg = toy_config()
    run = runs.get_run(cfg.to_dict())
    fit(cfg, data, run=run, progress=False, stop_after_epoch=1)
    with pytest.raises(CheckpointMismatchError, match="written by config"):
        fit(cfg.replace(lr=0.01), data, run=run, progress=False)


def test_exploding_learning_rate_names_the_step():
    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf).* at epoch 1, step \d+ of \d+"):
        fit(toy_config(lr=1e12, head="cosface", head_kwargs={"s": 64.0, "m": 0.35}), toy_faces(), progress=False)


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="head 'nope' is unknown"):
        toy_config(head="nope")
    with pytest.raises(ValueError, match="loss term 'hinge' is unknown"):
        toy_config(terms={"hinge": {}})
    with pytest.raises(ValueError, match="pk=.*batch_size"):
        toy_config(sampler="pk", pk=(4, 4), batch_size=32)
    with pytest.raises(ValueError, match="needs a dfi config"):
        toy_config(head="dbm")
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"lr": 0.1, "learning_rate": 0.1})


def test_empty_or_tiny_dataset_errors():
    data = toy_faces(num_classes=2, per_class=4)
    with pytest.raises(ValueError, match="no batch"):
        fit(toy_config(batch_size=64), data, progress=False)


def test_extra_terms_and_callbacks_plug_in_without_changing_the_loop():
    data = toy_faces()
    seen_steps, seen_epochs = [], []
    cfg = toy_config(terms={"range": {"margin": 10.0}}, sampler="pk", pk=(4, 8), batch_size=32, epochs=2)
    result = fit(cfg, data, progress=False, step_callbacks=[lambda s: seen_steps.append(s.step)],
                 epoch_callbacks=[lambda s: seen_epochs.append(s.epoch)])
    assert seen_steps == list(range(len(seen_steps))) and len(seen_steps) == 2 * (len(data) // 32)
    assert seen_epochs == [1, 2]
    assert "range" in result.history[0]


def test_domain_balancing_refreshes_dfi_from_the_prototypes():
    data = toy_faces()
    cfg = toy_config(head="dbm", head_kwargs={"s": 16.0, "m": 0.35}, rbm="soft", rbm_weight=0.01,
                     dfi={"k": 3, "s": 16.0, "eps": 5.5, "every": 2})
    result = fit(cfg, data, progress=False)
    from dbrepro.dfi import domain_frequency_indicator

    dfi = result.objective.dfi
    assert not torch.equal(dfi, torch.ones_like(dfi))  # refreshed
    assert "dfi" not in dict(result.objective.head.named_buffers())  # one DFI, the objective's
    # refreshed before the last step whose index is a multiple of `every`, so close to the final prototypes
    final = domain_frequency_indicator(result.objective.head.weight.detach(), k=3, s=16.0, eps=5.5)
    assert torch.allclose(dfi, final, rtol=0.2)
    assert "rbm" in result.history[0]


def _ddp_worker(rank, world, port, path, cfg_dict, result_path):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    cfg = TrainConfig.from_dict(cfg_dict)
    result = fit(cfg, toy_faces(), progress=False, device="cpu")
    if rank == 0:
        torch.save({k: v.clone() for k, v in result.module.state_dict().items()}, result_path)
    dist.destroy_process_group()


def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    cfg = toy_config(epochs=3, lr=0.02)
    single = fit(cfg, toy_faces(), progress=False, device="cpu")
    out = tmp_path / "ddp.pt"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path), cfg.to_dict(), str(out)), nprocs=2, join=True)
    ddp_state = torch.load(out)
    # same data, same global batch, gradients averaged over ranks: close to the single process
    # (not identical: batch-norm statistics are per rank, over half a batch)
    module = build(cfg, 8)
    module.load_state_dict(ddp_state)
    module.eval()
    x = toy_faces().images[:64]
    from dbrepro.models import normalize_images

    with torch.no_grad():
        a = torch.nn.functional.normalize(single.model(normalize_images(x)))
        b = torch.nn.functional.normalize(module.model(normalize_images(x)))
        acc_single = (single.objective.head.logits(single.model(normalize_images(x)), torch.zeros(64, dtype=torch.long)).argmax(1)
                      == torch.as_tensor(toy_faces().labels[:64])).float().mean()
        acc_ddp = (module.objective.head.logits(module.model(normalize_images(x)), torch.zeros(64, dtype=torch.long)).argmax(1)
                   == torch.as_tensor(toy_faces().labels[:64])).float().mean()
    assert (a * b).sum(1).mean() > 0.9  # embeddings nearly the same direction
    assert abs(float(acc_single) - float(acc_ddp)) <= 0.1


def test_cpu_bf16_runs_the_backbone_in_bfloat16_and_the_head_in_float32(cache, monkeypatch):
    """``cpu_bf16``: the backbone's convolutions compute in bfloat16 under autocast, the head gets float32
    embeddings, the weights stay float32; the run learns, records its autocast dtype, and a float32 run of
    the same config is another cache key."""
    from dbrepro.train import loop

    seen = {"conv": set(), "head": set()}
    real_build = loop.build

    def build_with_spies(cfg, num_classes):
        built = real_build(cfg, num_classes)
        conv = next(m for m in built.model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda mod, args, out: seen["conv"].add(out.dtype))
        built.objective.head.register_forward_pre_hook(lambda mod, args: seen["head"].add(args[0].dtype))
        return built

    monkeypatch.setattr(loop, "build", build_with_spies)
    cfg = toy_config(epochs=6, milestones=(4, 5), lr=0.1, cpu_bf16=True)
    run = runs.get_run(cfg.to_dict())
    result = fit(cfg, toy_faces(), run=run, progress=False)
    assert seen == {"conv": {torch.bfloat16}, "head": {torch.float32}}
    assert all(p.dtype == torch.float32 for p in result.module.parameters())
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert run.metrics()["autocast"] == "bfloat16"
    assert cfg.key() != cfg.replace(cpu_bf16=False).key()


def test_float32_is_the_default_on_the_cpu(cache):
    cfg = toy_config(epochs=1)
    run = runs.get_run(cfg.to_dict())
    fit(cfg, toy_faces(), run=run, progress=False)
    assert cfg.cpu_bf16 is False and run.metrics()["autocast"] == "float32"
    with pytest.raises(ValueError, match="cpu_bf16 must be true or false"):
        toy_config(cpu_bf16="yes")

