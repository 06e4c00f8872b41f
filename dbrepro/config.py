"""Profiles: the one place that says how big everything is.

Three profiles, read by the notebooks (through their ``PROFILE`` parameter) and by the CLI
(``--profile``):

``smoke``
    Tests and CI. A tiny synthetic world; every notebook runs end to end in seconds.
    Its numbers mean nothing and the notebooks say so in a banner.
``cpu`` (default)
    The book's published numbers: the default synthetic world, a small backbone,
    the whole book on 2 CPU cores (budget 30 minutes; measured 43.5 on 2026-12-02: the README's budget table).
``rehearsal``
    The paper profile's code path on a tiny InsightFace folder written from the synthetic world
    (``dbrepro rehearsal DIR``), on any CPU in minutes: what a GPU owner runs first.
``paper``
    The papers' settings on a GPU box: 112x112 crops, IR-ResNet-18/50 with 512-D
    embeddings, 15 epochs with lr 0.1 divided by 10 at epochs 5, 8 and 11, and real data
    (CASIA-WebFace / MS1MV2 in InsightFace format) given by path.

Every default of :class:`Profile` is the papers' value (:mod:`dbrepro.papers`); a profile states only
where it departs from them. ``Profile.milestones`` follow the papers' step schedule (/10 at epochs 5, 8,
11 of 15), scaled to the profile's number of epochs.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import papers

if TYPE_CHECKING:  # PyTorch is imported where a device is resolved: the book's executor and CLI start without it
    import torch

PROFILE_NAMES = ("smoke", "cpu", "paper", "rehearsal")
DEFAULT_PROFILE = "cpu"


def scaled_milestones(epochs: int) -> tuple[int, ...]:
    """The papers' milestones (5, 8, 11 of 15 epochs) scaled to ``epochs``.

    Milestones are rounded to whole epochs, kept strictly increasing and inside (0, epochs);
    with very few epochs some of them merge and disappear.

    >>> scaled_milestones(15)
    (5, 8, 11)
    >>> scaled_milestones(6)
    (2, 3, 4)
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    out: list[int] = []
    for m in papers.MILESTONES:
        e = round(m * epochs / papers.EPOCHS)
        if 0 < e < epochs and (not out or e > out[-1]):
            out.append(e)
    return tuple(out)


@dataclass(frozen=True)
class Profile:
    """Everything a profile fixes. Notebooks and the CLI read these, never their own constants.

    Every default is the papers' value (:mod:`dbrepro.papers`), so the ``paper`` profile states only data
    and seeds, and the ``cpu`` and ``smoke`` profiles state exactly where they depart from the papers.
    """

    name: str
    #: seeds for claims that depend on a difference (mean +- std over these)
    seeds: tuple[int, ...]
    #: synthetic world size overrides, passed to ``dbrepro.data.synth.WorldConfig``
    world: dict[str, Any] = field(default_factory=dict)
    #: square input resolution in pixels
    image_size: int = papers.IMAGE_SIZE
    #: backbone name for :func:`dbrepro.models.build_backbone`: IR-ResNet-18 (DB Tables 2-3, the RL chapters) ...
    backbone: str = "ir18"
    #: ... and IR-ResNet-50 (DB Tables 4-7, Fig. 7)
    backbone_large: str = "ir50"
    #: constructor arguments of both backbones
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    embedding_size: int = papers.EMBEDDING_SIZE
    batch_size: int = papers.BATCH_SIZE
    epochs: int = papers.EPOCHS
    #: the step schedule's milestones; None: the papers' 5, 8, 11 of 15, scaled to ``epochs``
    lr_milestones: tuple[int, ...] | None = None
    #: DataLoader workers for on-disk datasets (in-memory tensors need none)
    num_workers: int = 0
    #: independent runs a chapter trains at once on the CPU, one thread each (0: one per usable core;
    #: ``$DBREPRO_JOBS`` overrides it; :mod:`dbrepro.workers`); on a GPU always one at a time
    train_jobs: int = 1
    #: the backbone's forward under bfloat16 autocast on the CPU (``TrainConfig.cpu_bf16``): True, False, or
    #: None for "where the CPU has native bf16 instructions" (:func:`cpu_has_native_bf16`); ``$DBREPRO_CPU_BF16``
    #: (0 or 1) overrides None. Resolved when a recipe builds its config, so the run cache keys the choice
    cpu_bf16: bool | None = False
    #: iterations between two DFI refreshes; the paper: "from the last iteration" (DB §3.2)
    dfi_refresh_every: int = 1
    #: scale s of the normalised-softmax heads (CosFace, ArcFace, DBM) and of the DFI (DB Eq. 1)
    scale: float = papers.COSFACE_S
    #: Range Loss P x K batches (16 x 16 in the paper)
    range_pk: tuple[int, int] = papers.RANGE_PK
    #: the Range Loss paper's comparison losses (joint with softmax): constructor kwargs + "weight".
    #: "halves": positives from one half of the identities, negatives from the other (RL §3.2).
    #: The papers give no weights for contrastive and triplet loss; rl-03 compares the choices.
    contrastive: dict[str, Any] = field(default_factory=lambda: {"margin": 1.0, "weight": 0.1, "halves": True})
    triplet: dict[str, Any] = field(default_factory=lambda: {"margin": 0.2, "weight": 0.1, "halves": True})
    center: dict[str, Any] = field(default_factory=dict)
    #: the calibration chapter's premise maps (:func:`dbrepro.regime.run_premise_maps`): axes that replace
    #: the full grid's (``embeddings``, ``ks``, ``spreads``, ``nuisances``); empty: the full grid
    premise_map: dict[str, tuple] = field(default_factory=dict)
    #: True when the profile's numbers are not meant to be read (the smoke banner)
    numbers_meaningful: bool = True
    #: real data is required (paper profile): notebooks fail with a clear error without a path
    needs_data_path: bool = False

    @property
    def milestones(self) -> tuple[int, ...]:
        """Epochs after which the learning rate drops by 10: ``lr_milestones``, or the papers' scaled."""
        return self.lr_milestones if self.lr_milestones is not None else scaled_milestones(self.epochs)

    def replace(self, **changes: Any) -> "Profile":
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        seeds=(0,),
        world={"preset": "smoke"},
        image_size=32,
        backbone="small",
        backbone_large="small",
        embedding_size=64,
        batch_size=64,
        epochs=2,
        range_pk=(16, 4),
        scale=16.0,
        # two values per axis (one world re-rendered per identity-map cell): the code path of the maps in 6
        # runs instead of the full grid's 14
        premise_map={"embeddings": (16, 64), "ks": (2, 8), "spreads": (0.5, 2.0), "nuisances": (0.35, 1.05)},
        numbers_meaningful=False,
    ),
    "cpu": Profile(
        name="cpu",
        seeds=(0, 1, 2),
        world={"preset": "cpu"},
        # a small network on 48 px crops of the synthetic world, so that the book runs on 2 cores. At 32 px
        # (until 2026-12-04) CosFace gained only about a point over softmax, evenly over the suites, whatever
        # else was changed (C2 failed); at 48 px it gains about two, most on the cross-pose suite, as on real data
        image_size=48,
        backbone="small",
        backbone_large="small",
        embedding_size=128,
        # the cpu world has far fewer images than CASIA-WebFace: batches of 32 give the margin heads
        # enough optimiser steps to converge (the calibration chapter's C1, C2) at the same cost per image
        batch_size=32,
        # as the papers' 15 epochs with drops after 5, 8 and 11, shortened: half the epochs at the full
        # rate, one at each lower one, and two at the lowest, so that the loss ends on a plateau (C1)
        epochs=8,
        lr_milestones=(4, 5, 6),
        # bfloat16 convolutions where the CPU has them (AVX512-BF16, AMX): the trainer's img/s 1.43x float32's
        # at batch 32 on one thread, and the C2 runs' four-suite means within their seed spread of float32's
        # over 3 seeds (2026-12-04, 32 px; README)
        cpu_bf16=None,
        # K = 4 images (the cpu world's smallest class) of P = 8 identities: the profile's batch of 32
        range_pk=(8, 4),
        # s = 64 is meant for 10k-85k classes and 512-D embeddings; db-02 argues s for this world
        scale=16.0,
        # a chapter's independent runs side by side, one per core, one thread each: 1.88x faster than one
        # 2-thread run at a time on 2 cores (dbrepro.workers, benchmarks/bench_parallel.py)
        train_jobs=0,
    ),
    "paper": Profile(
        name="paper",
        seeds=(0,),
        num_workers=8,
        # a DFI refresh over MS1MV2's 85,742 prototypes is a 85,742 x 85,742 cosine top-K; every 100
        # iterations keeps it a small share of a step (benchmarks/bench_dfi.py)
        dfi_refresh_every=100,
        needs_data_path=True,
    ),
    # the paper profile's code path (InsightFace RecordIO and .bin packs, IR-ResNet at 112 px, DataLoader
    # workers, the real-data branch of every chapter, AMP on CUDA) on a tiny folder that
    # `dbrepro rehearsal DIR` writes from the synthetic world: minutes on a CPU, before days on GPUs
    "rehearsal": Profile(
        name="rehearsal",
        seeds=(0,),
        world={"preset": "rehearsal"},
        # the IR-ResNets at a thirty-second of their widths (2 to 16 channels), 64-D embeddings, batches of
        # 32 and one epoch, so that a CPU runs every chapter in minutes; 112 px, the backbones, DataLoader
        # workers and every code path are the paper profile's
        backbone_kwargs={"widths": (2, 4, 8, 16)},
        embedding_size=64,
        batch_size=32,
        # one epoch: the schedule, resume and epoch records are the paper's code either way, and a second
        # epoch would only double the rehearsal's arithmetic
        epochs=1,
        num_workers=2,
        range_pk=(8, 4),
        numbers_meaningful=False,
        needs_data_path=True,
    ),
}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 arithmetic natively (AVX512-BF16 or AMX tiles; PyTorch's own checks).

    Without it oneDNN emulates bf16, slower than float32, so a profile with ``cpu_bf16=None`` trains in float32.
    """
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a build without the checks (not x86): no native bf16 known
        return False


def resolve_cpu_bf16(setting: bool | None) -> bool:
    """A profile's ``cpu_bf16`` as the config's bool: None is ``$DBREPRO_CPU_BF16`` (0/1) if set, else
    :func:`cpu_has_native_bf16`."""
    if setting is not None:
        return bool(setting)
    env = os.environ.get("DBREPRO_CPU_BF16", "").strip()
    if env:
        if env not in ("0", "1"):
            raise ValueError(f"DBREPRO_CPU_BF16 must be 0 or 1, got {env!r}")
        return env == "1"
    return cpu_has_native_bf16()


def get_profile(name: str | Profile) -> Profile:
    """Look a profile up by name; a clear ``ValueError`` for an unknown one."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}: choose one of {', '.join(PROFILE_NAMES)}"
        ) from None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch.

    An explicit ``"cuda"`` on a machine without CUDA is an error, not a silent fallback.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"DEVICE={device!r} asked for CUDA, but torch sees no CUDA device")
    return dev
