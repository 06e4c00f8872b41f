"""Inter-class compactness IC(w) and the Domain Frequency Indicator (Cao et al., CVPR 2020, Sec. 3.1).

Eq. 1, for the prototype ``w`` of one class (a row of the classifier's weight)::

    IC(w) = log sum_{k=1..K} exp(s * cos(w_k, w))

over the K classes whose prototypes are nearest to ``w`` by cosine, ``w`` itself excluded.
Head-domain classes sit in crowded regions of the prototype sphere and get a large IC.

Eq. 2::

    DFI(w) = eps / IC(w)

large for tail-domain classes. DB uses eps = 5.5, s = 64, K = 100 (Sec. 4.2, Table 3).

Scale. MS1MV2 has 85,742 classes: the full cosine matrix would take 29 GB in float32. The
computation here goes through the prototypes in row blocks of ``chunk`` rows (normalise, one
block times all prototypes, mask the block's own diagonal, top-K per row, logsumexp), so it
holds one ``chunk x C`` block at a time (175 MB for C = 85,742 and the default chunk of 512)
next to a normalised copy of the prototypes (another 175 MB at 512-D). ``benchmarks/bench_dfi.py``
measures its time and memory at that size against a faiss ``IndexFlatIP`` search for the same
neighbours.

Edge cases, decided here:

- ``K = 0`` ("no DFI", the first column of DB Table 3): IC is the log of an empty sum, ``-inf``
  for every class, and :func:`domain_frequency_indicator` returns **ones**, so DBM is plain
  CosFace and the RBM gate regresses onto a constant.
- ``IC <= 0``: possible when ``s`` is small and the nearest cosines are negative (the sum of
  K terms below 1), where eps / IC would be negative or infinite. By default
  :func:`domain_frequency_indicator` raises a ``ValueError`` naming the class; with
  ``ic_floor=c > 0`` it clamps IC at ``c`` instead, so DFI lies in (0, eps / c].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 512


def _check_weight_and_k(weight: torch.Tensor, k: int, s: float, chunk: int) -> None:
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or not torch.is_floating_point(weight):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"DFI: weight must be a float tensor (num_classes, embedding_size), got {shape}")
    num_classes = weight.shape[0]
    if not isinstance(k, int) or not 0 <= k <= num_classes - 1:
        raise ValueError(f"DFI: k must be an integer in [0, num_classes - 1 = {num_classes - 1}], got {k!r}")
    if not s > 0:
        raise ValueError(f"DFI: the scale s must be positive, got {s}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"DFI: chunk must be a positive integer, got {chunk!r}")
    if not torch.isfinite(weight).all():
        raise ValueError("DFI: weight contains NaN or infinite values")


@torch.no_grad()
def inter_class_compactness(
    weight: torch.Tensor, k: int, s: float, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """DB Eq. 1: ``IC(w_c) = log sum over the k nearest other prototypes of exp(s cos)``, for every class c.

    Parameters
    ----------
    weight
        Class prototypes (num_classes, embedding_size), e.g. a head's ``.weight``; any device.
    k
        Number of nearest other classes K (0 <= k <= num_classes - 1). ``k = 0`` gives ``-inf``.
    s
        Scale s > 0 (64 in DB).
    chunk
        Rows per block; memory is about ``chunk x num_classes`` floats plus a normalised copy of
        ``weight``. The result does not depend on it.

    Returns
    -------
    float32 tensor (num_classes,) on ``weight``'s device. Computed in float64 when ``weight`` is
    float64, else in float32.
    """
    # region: Eq. 1 in row blocks
    _check_weight_and_k(weight, k, s, chunk)
    num_classes = weight.shape[0]
    if k == 0:
        return torch.full((num_classes,), float("-inf"), dtype=torch.float32, device=weight.device)
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    unit = F.normalize(weight.to(dtype), dim=1)
    ic = torch.empty(num_classes, dtype=dtype, device=weight.device)
    block = torch.empty(min(chunk, num_classes), num_classes, dtype=dtype, device=weight.device)
    for start in range(0, num_classes, chunk):
        stop = min(start + chunk, num_classes)
        cos = torch.mm(unit[start:stop], unit.T, out=block[: stop - start])  # (b, C), reusing one buffer
        rows = torch.arange(stop - start, device=weight.device)
        cos[rows, rows + start] = float("-inf")  # a class is not its own neighbour
        nearest = cos.topk(k, dim=1, sorted=False).values
        ic[start:stop] = torch.logsumexp(s * nearest, dim=1)
    return ic.float()
    # endregion


@torch.no_grad()
def domain_frequency_indicator(
    weight: torch.Tensor,
    k: int,
    s: float,
    eps: float,
    chunk: int = DEFAULT_CHUNK,
    ic_floor: float | None = None,
) -> torch.Tensor:
    """DB Eq. 2: ``DFI = eps / IC(w)`` for every class, float32 (num_classes,).

    ``k = 0`` returns ones (no DFI). Where some ``IC <= 0`` a ``ValueError`` is raised, unless
    ``ic_floor > 0`` is given, in which case IC is clamped at ``ic_floor`` first.
    """
    if not eps > 0:
        raise ValueError(f"DFI: eps must be positive, got {eps}")
    if ic_floor is not None and not ic_floor > 0:
        raise ValueError(f"DFI: ic_floor must be positive, got {ic_floor}")
    ic = inter_class_compactness(weight, k, s, chunk=chunk)
    if k == 0:
        return torch.ones_like(ic)
    if ic_floor is not None:
        ic = ic.clamp_min(ic_floor)
    elif (ic <= 0).any():
        bad = torch.nonzero(ic <= 0).flatten()
        first = int(bad[0])
        raise ValueError(
            f"DFI: IC <= 0 for {len(bad)} of {len(ic)} classes (class {first}: IC = {float(ic[first]):.4g}), "
            f"so eps / IC would be negative or infinite; use a larger s (got {s}) or k (got {k}), "
            f"or pass ic_floor to clamp IC"
        )
    return (eps / ic).float()
