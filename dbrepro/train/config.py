"""What determines a training run: :class:`TrainConfig` (and its run-cache key) and :class:`DFIConfig`.

Defaults are the papers' values, each with its source; profiles (:mod:`dbrepro.config`) set the sizes
and :mod:`dbrepro.recipes` composes the two into the book's experiments.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import papers
from ..config import scaled_milestones
from ..losses import HEADS, TERMS, term_arguments
from ..models import BACKBONES
from ..models.rbm import GATES
from ..paths import config_hash

SAMPLERS = ("random", "pk")


def with_defaults(constructor: Callable[..., Any], given: dict[str, Any], where: str,
                  skip: tuple[str, ...] = ("embedding_size", "num_classes")) -> dict[str, Any]:
    """``given`` keyword arguments of ``constructor`` completed with its defaults, so that a config records
    every value it trains with (and a later change of a default never serves an old run as a new one).

    An argument the constructor does not take is a ``ValueError`` naming ``where`` and the allowed names.
    """
    params = {name: p.default for name, p in inspect.signature(constructor).parameters.items()
              if name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return complete_arguments(params, given, where)


def complete_arguments(params: dict[str, Any], given: dict[str, Any], where: str) -> dict[str, Any]:
    """``given`` completed with the defaults in ``params`` (name -> default or ``inspect.Parameter.empty``)."""
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise ValueError(f"{where}: unknown argument(s) {unknown}; allowed: {', '.join(params) or 'none'}")
    out = {name: d for name, d in params.items() if d is not inspect.Parameter.empty}
    out.update(given)
    return out


def check_argument_types(given: dict[str, Any], defaults: dict[str, Any], where: str) -> None:
    """Each argument in ``given`` must be of the kind of its default: a bool for a bool, a finite number for a
    number, a string for a string (arguments without a scalar default are left to their constructor)."""
    for name, value in given.items():
        default = defaults.get(name, inspect.Parameter.empty)
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, numbers.Real):
            ok, kind = _is_real(value) and math.isfinite(value), "a finite number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise ValueError(f"{where}.{name} must be {kind} (default {default!r}), got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(name: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _real(name: str, value: Any, allowed: str, ok: Callable[[float], bool]) -> None:
    if not _is_real(value) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _choice(name: str, value: Any, choices: Any) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} {value!r} is unknown: choose one of {', '.join(choices)}")


def _mapping(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping of names to values, got {value!r}")


@dataclass(frozen=True)
class DFIConfig:
    """How the Domain Frequency Indicator (DB Eq. 1-2) is computed from the head's prototypes.

    Defaults: DB §4.2 (CASIA-WebFace, 10,575 classes): K = 100 nearest prototypes, s = 64 (the scale
    of the CosFace head it is computed from), eps = 5.5; ``every`` = iterations between two refreshes
    (the paper computes the DFI "from the last iteration", DB §3.2: ``every = 1``).
    """

    k: int = papers.DB_K
    s: float = papers.COSFACE_S
    eps: float = papers.DB_EPS
    every: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"dfi.k must be an integer >= 1 (the K nearest prototypes; DB Table 3's K = 0, "
                             f"'without DFI', is the CosFace baseline), got {self.k!r}")
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ValueError(f"dfi.every must be an integer >= 1 (iterations between refreshes), got {self.every!r}")
        for name in ("s", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"dfi.{name} must be a positive finite number, got {value!r}")
            object.__setattr__(self, name, float(value))

    @classmethod
    def coerce(cls, value: "DFIConfig | dict[str, Any] | None") -> "DFIConfig | None":
        """A :class:`DFIConfig` from itself, a dict of its fields (as JSON gives it), or ``None``."""
        if value is None or isinstance(value, DFIConfig):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"dfi must be None or a dict with keys k, s, eps, every; got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"dfi has unknown keys {unknown}; allowed: {', '.join(sorted(known))}")
        return cls(**value)


@dataclass
class TrainConfig:
    """Everything that determines a training run (and therefore its run-cache key).

    ``data`` names the training set (a data spec, :mod:`dbrepro.data.specs`); the loop itself never reads
    it, it makes the run key unique. With ``sampler="pk"`` the batch size is P x K (``pk``) and need not
    be given; defaults are the papers' recipe (SGD, momentum 0.9, weight decay 5e-4, lr 0.1 divided by 10
    at epochs 5, 8 and 11 of 15, batches of 256).
    """

    data: dict[str, Any] = field(default_factory=dict)
    #: DB Tables 2-3 train IR-ResNet-18 (Tables 4-7: IR-ResNet-50)
    backbone: str = "ir18"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    embedding_size: int = papers.EMBEDDING_SIZE
    image_size: int = papers.IMAGE_SIZE
    #: classification head: a key of :data:`dbrepro.losses.HEADS`
    head: str = "cosface"
    #: the head's constructor arguments; completed with the head's defaults (the papers' values)
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    #: extra loss terms, name -> constructor kwargs (each term applies its own ``weight``); completed with the
    #: term's defaults
    terms: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Residual Balancing Module after the backbone: None (no RBM), "soft" (DB Eq. 3, gate regressed by
    #: Eq. 4) or "ungated" (f(x) = 1, DB Table 2's "RBM w/o sg")
    rbm: str | None = None
    #: lambda of DB Eq. 6, the weight of the gate regression (Eq. 4); DB §4.2: 0.01
    rbm_weight: float = papers.DB_LAMBDA
    #: how the DFI is refreshed for DBM and the soft RBM gate (None: no DFI)
    dfi: DFIConfig | None = None
    epochs: int = papers.EPOCHS
    #: epochs after which the lr is divided by 10; None = the papers' 5/8/11 of 15, scaled
    milestones: tuple[int, ...] | None = None
    lr: float = papers.LR
    momentum: float = papers.MOMENTUM
    weight_decay: float = papers.WEIGHT_DECAY
    #: images per optimiser step (over all processes); None: P x K with the "pk" sampler, else 256
    batch_size: int | None = None
    #: "random" (shuffled batches) or "pk" (P identities x K images; Range Loss uses 16 x 16)
    sampler: str = "random"
    pk: tuple[int, int] = papers.RANGE_PK
    flip: bool = True
    #: float16 mixed precision (autocast + GradScaler) on CUDA
    amp: bool = True
    #: on the CPU, the backbone's forward under bfloat16 autocast (the head and the loss terms stay float32,
    #: as under ``amp``): oneDNN's bf16 kernels trained the small cpu network 1.43x faster at batch 32 on a
    #: CPU with AVX512-BF16 (2026-12-04); on a CPU without native bf16 they are emulated, and slower. The
    #: recipes set it from :attr:`dbrepro.config.Profile.cpu_bf16`; a bf16 run is another cache key
    cpu_bf16: bool = False
    seed: int = 0
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        self.check_fields()
        if self.milestones is not None:
            self.milestones = tuple(int(m) for m in self.milestones)
        self.pk = tuple(int(v) for v in self.pk)
        self.dfi = DFIConfig.coerce(self.dfi)
        if self.batch_size is None:
            self.batch_size = self.pk[0] * self.pk[1] if self.sampler == "pk" else papers.BATCH_SIZE
        if self.head in HEADS:
            self.head_kwargs = with_defaults(HEADS[self.head], dict(self.head_kwargs), f"head_kwargs of {self.head!r}")
        self.terms = {name: complete_arguments(term_arguments(name), dict(kwargs or {}), f"terms.{name}")
                      if name in TERMS else kwargs for name, kwargs in self.terms.items()}
        self.validate()

    def check_fields(self) -> None:
        """The type and range of every field, each error naming the field and what it may be.

        Run first at construction (``TrainConfig(...)``, :meth:`from_dict`, ``dbrepro train --set`` and
        ``--print-config`` alike), before anything is derived from the values; :meth:`validate` then checks
        how the fields fit together.
        """
        _mapping("data", self.data)  # a data spec, checked where it is loaded (dbrepro.data.specs)
        _choice("backbone", self.backbone, BACKBONES)
        _mapping("backbone_kwargs", self.backbone_kwargs)
        backbone_defaults = {name: p.default for name, p in inspect.signature(BACKBONES[self.backbone]).parameters.items()
                             if name not in ("embedding_size", "image_size")
                             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        complete_arguments(backbone_defaults, self.backbone_kwargs, f"backbone_kwargs of {self.backbone!r}")
        check_argument_types(self.backbone_kwargs, backbone_defaults, "backbone_kwargs")
        for name in ("embedding_size", "image_size"):
            _integer(name, getattr(self, name), 1)
        _choice("head", self.head, HEADS)
        _mapping("head_kwargs", self.head_kwargs)
        head_defaults = {name: p.default for name, p in inspect.signature(HEADS[self.head]).parameters.items()}
        check_argument_types(self.head_kwargs, head_defaults, "head_kwargs")
        _mapping("terms", self.terms)
        for name, kwargs in self.terms.items():
            _choice("loss term", name, TERMS)
            if kwargs is not None:
                _mapping(f"terms.{name}", kwargs)
                check_argument_types(kwargs, term_arguments(name), f"terms.{name}")
        if self.rbm is not None:
            _choice("rbm", self.rbm, GATES)
        _real("rbm_weight", self.rbm_weight, "a finite number >= 0 (lambda of DB Eq. 6)", lambda v: v >= 0)
        _integer("epochs", self.epochs, 1)
        if self.milestones is not None:
            ms = self.milestones
            if not (isinstance(ms, (list, tuple)) and all(_is_int(m) for m in ms)
                    and all(0 < m < self.epochs for m in ms) and all(a < b for a, b in zip(ms, ms[1:]))):
                raise ValueError(f"milestones must be null or strictly increasing integers inside (0, epochs={self.epochs}) "
                                 f"(epochs after which the lr is divided by 10), got {ms!r}")
        _real("lr", self.lr, "a finite number > 0", lambda v: v > 0)
        _real("momentum", self.momentum, "a finite number in [0, 1)", lambda v: 0 <= v < 1)
        _real("weight_decay", self.weight_decay, "a finite number >= 0", lambda v: v >= 0)
        if self.batch_size is not None:
            _integer("batch_size", self.batch_size, 1)
        _choice("sampler", self.sampler, SAMPLERS)
        if not (isinstance(self.pk, (list, tuple)) and len(self.pk) == 2 and all(_is_int(v) and v >= 1 for v in self.pk)):
            raise ValueError(f"pk must be two integers >= 1 (P identities x K images), got {self.pk!r}")
        for name in ("flip", "amp", "cpu_bf16"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _integer("seed", self.seed, 0)
        if self.grad_clip is not None:
            _real("grad_clip", self.grad_clip, "null or a finite number > 0", lambda v: v > 0)

    def validate(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head {self.head!r} is unknown: choose one of {', '.join(HEADS)}")
        for name in self.terms:
            if name not in TERMS:
                raise ValueError(f"loss term {name!r} is unknown: choose from {', '.join(TERMS)}")
        if self.rbm is not None and self.rbm not in GATES:
            raise ValueError(f"rbm must be None (no RBM) or one of {', '.join(map(repr, GATES))}, got {self.rbm!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}, got {self.sampler!r}")
        if self.sampler == "pk" and self.pk[0] * self.pk[1] != self.batch_size:
            raise ValueError(f"pk={self.pk} gives batches of {self.pk[0] * self.pk[1]}, but batch_size={self.batch_size}")
        for name in ("epochs", "batch_size", "embedding_size", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if getattr(HEADS[self.head], "needs_dfi", False) and self.dfi is None:
            raise ValueError(f"head {self.head!r} needs a dfi config (k, s, eps, every) to set its per-class margins")
        if self.rbm == "soft" and self.dfi is None:
            raise ValueError("rbm='soft' regresses its gate onto the DFI: give a dfi config (k, s, eps, every)")

    @property
    def schedule(self) -> tuple[int, ...]:
        return self.milestones if self.milestones is not None else scaled_milestones(self.epochs)

    def lr_at(self, epoch: int) -> float:
        """The step schedule: ``lr / 10`` after each milestone (epochs counted from 0)."""
        return self.lr * 0.1 ** sum(epoch >= m for m in self.schedule)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pk"] = list(self.pk)
        d["milestones"] = list(self.schedule)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def key(self) -> str:
        return config_hash(self.to_dict())
