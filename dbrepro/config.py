"""Profiles: the one place that says how big everything is.

Three profiles, read by the notebooks (through their ``PROFILE`` parameter) and by the CLI
(``--profile``):

``smoke``
    Tests and CI. A tiny synthetic world; every notebook runs end to end in seconds.
    Its numbers mean nothing and the notebooks say so in a banner.
``cpu`` (default)
    The book's published numbers: the default synthetic world, a small backbone,
    the whole book in at most 30 minutes on 2 CPU cores.
``paper``
    The papers' settings on a GPU box: 112x112 crops, IR-ResNet-18/50 with 512-D
    embeddings, 15 epochs with lr 0.1 divided by 10 at epochs 5, 8 and 11, and real data
    (CASIA-WebFace / MS1MV2 in InsightFace format) given by path.

``Profile.milestones`` follow the papers' step schedule (/10 at epochs 5, 8, 11 of 15),
scaled to the profile's number of epochs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

PROFILE_NAMES = ("smoke", "cpu", "paper")
DEFAULT_PROFILE = "cpu"

#: The papers' learning-rate schedule: lr / 10 at epochs 5, 8 and 11, stop at 15.
PAPER_EPOCHS = 15
PAPER_MILESTONES = (5, 8, 11)


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
    for m in PAPER_MILESTONES:
        e = round(m * epochs / PAPER_EPOCHS)
        if 0 < e < epochs and (not out or e > out[-1]):
            out.append(e)
    return tuple(out)


@dataclass(frozen=True)
class Profile:
    """Everything a profile fixes. Notebooks and the CLI read these, never their own constants."""

    name: str
    #: square input resolution in pixels
    image_size: int
    #: backbone name for :func:`dbrepro.models.build_backbone`
    backbone: str
    embedding_size: int
    batch_size: int
    epochs: int
    lr: float
    #: seeds for claims that depend on a difference (mean +- std over these)
    seeds: tuple[int, ...]
    #: synthetic world size overrides, passed to ``dbrepro.data.synth.WorldConfig``
    world: dict[str, Any] = field(default_factory=dict)
    #: DataLoader workers for on-disk datasets (in-memory tensors need none)
    num_workers: int = 0
    #: iterations between two DFI refreshes from the head's prototypes (Domain Balancing)
    dfi_refresh_every: int = 100
    #: scale s of the normalised-softmax heads (CosFace, ArcFace, DBM) and of the DFI (DB Eq. 1)
    scale: float = 64.0
    #: K nearest prototypes of the DFI (DB Eq. 1); the paper's 100 is ~1% of CASIA-WebFace's classes
    dfi_k: int = 100
    #: Range Loss: margin M of Eq. 4 (squared distance between class centres) and the P x K batches.
    #: M = 2 x embedding_size in every profile: our embeddings end in BatchNorm1d (unit-variance
    #: coordinates), so 2D is the squared distance of two unrelated embeddings; a softmax-trained cpu
    #: model (batches of 64) puts the closest two centres of a batch at ~80 and a typical pair
    #: at ~330 (rl-05 measures it), so with M = 256 the hinge acts on the closest pair and asks it to be
    #: nearly as far apart as a typical pair of identities.
    range_margin: float = 1024.0
    #: the paper's 16 x 16 (paper profile); the cpu profile keeps P = 16 identities and uses K = 4, the cpu
    #: world's smallest class (no identity repeats an image), so its batches are the profile's 64
    range_pk: tuple[int, int] = (16, 16)
    #: the Range Loss paper's comparison losses (joint with softmax): constructor kwargs + "weight".
    #: "halves": positives from one half of the identities, negatives from the other (RL §3.2).
    #: Weights chosen once on the cpu profile (rl-03): 0.1 beat 1.0 for contrastive and triplet on the
    #: agedb-like suite (no Part I claim reads it); center loss keeps Wen et al.'s 0.003 (it beat 0.03).
    contrastive: dict[str, Any] = field(default_factory=lambda: {"margin": 1.0, "weight": 0.1, "halves": True})
    triplet: dict[str, Any] = field(default_factory=lambda: {"margin": 0.2, "weight": 0.1, "halves": True})
    center: dict[str, Any] = field(default_factory=lambda: {"alpha": 0.5, "weight": 0.003})
    #: True when the profile's numbers are not meant to be read (the smoke banner)
    numbers_meaningful: bool = True
    #: real data is required (paper profile): notebooks fail with a clear error without a path
    needs_data_path: bool = False

    @property
    def milestones(self) -> tuple[int, ...]:
        return scaled_milestones(self.epochs)

    def replace(self, **changes: Any) -> "Profile":
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        image_size=32,
        backbone="small",
        embedding_size=64,
        batch_size=64,
        epochs=2,
        lr=0.1,
        seeds=(0,),
        world={"preset": "smoke"},
        range_margin=128.0,
        range_pk=(16, 4),
        dfi_refresh_every=1,
        scale=16.0,
        dfi_k=1,
        numbers_meaningful=False,
    ),
    "cpu": Profile(
        name="cpu",
        image_size=32,
        backbone="small",
        embedding_size=128,
        # batches of 64, not the papers' 256: the cpu world has ~11k images, so 256 would give ~250 SGD
        # steps in 6 epochs, too few for the margin heads to converge (CosFace's loss still ~13 of ~19 at
        # the end); 64 gives ~1,000 steps at the same cost per image (measured: the same 22 s a run)
        batch_size=64,
        epochs=6,
        lr=0.1,
        seeds=(0, 1, 2),
        world={"preset": "cpu"},
        range_margin=256.0,
        range_pk=(16, 4),
        # DB choices for 600 classes and 128-D (argued in db-02): s = 16, because the paper's s = 64 is
        # meant for 10k-85k classes and 512-D; measured on the CosFace baseline (batch 64, m = 0.35),
        # s = 16 / 32 / 64 gave 80.8 / 76.8 / 71.1 % averaged over the LFW, CALFW, CPLFW and AgeDB-like
        # suites (larger s left the loss far from converged in the profile's ~1,000 steps). K ~ 1% of the
        # classes (the paper's 100 of 10,575); the DFI "from the last iteration" (DB 3.2), ~3 ms a refresh
        dfi_refresh_every=1,
        scale=16.0,
        dfi_k=6,
    ),
    "paper": Profile(
        name="paper",
        image_size=112,
        backbone="ir18",
        embedding_size=512,
        batch_size=256,
        epochs=PAPER_EPOCHS,
        lr=0.1,
        seeds=(0,),
        world={"preset": "paper"},
        num_workers=8,
        dfi_refresh_every=100,
        needs_data_path=True,
    ),
}


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
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"DEVICE={device!r} asked for CUDA, but torch sees no CUDA device")
    return dev
