"""Inter-class compactness IC(w) and the Domain Frequency Indicator (Cao et al., CVPR 2020, Sec. 3.1).

Eq. 1, for the prototype ``w`` of one class (a row of the classifier's weight)::

    IC(w) = log sum_{k=1..K} exp(s * cos(w_k, w))

over the K classes whose prototypes are nearest to ``w`` by cosine, ``w`` itself excluded.
Head-domain classes sit in crowded regions of the prototype sphere and get a large IC.

Eq. 2::

    DFI(w) = eps / IC(w)

large for tail-domain classes. DB uses eps = 5.5, s = 64, K = 100 (Sec. 4.2, Table 3).

Scale. MS1MV2 has 85,742 classes: the full cosine matrix would take 29 GB in float32. The
computation here goes through the prototypes in blocks of ``chunk`` rows and multiplies each pair
of blocks once, the matrix being symmetric: the tile of blocks (a, b) gives block a's rows their
cosines to block b and, read by columns, block b's rows their cosines to block a. Every class keeps
the ``K`` largest cosines it has been offered so far; a tile offers a class only the cosines above
the smallest of those (the others cannot enter its ``K`` nearest), found with one comparison over the
tile, so the selection is cheap next to the matrix product once the first tiles have set those
thresholds. The diagonal tiles come first: after them every class holds ``chunk - 1`` cosines.
Memory: one ``chunk x chunk`` tile and its mask, ``K`` floats per class, and a normalised copy of
the prototypes (175 MB for 85,742 x 512). The result is exact, the same ``K`` cosines as a full sort
of every row, and does not depend on ``chunk`` beyond float rounding. ``benchmarks/bench_dfi.py``
measures time and memory at MS1MV2's size against a faiss ``IndexFlatIP`` search for the same
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

DEFAULT_CHUNK = 4096


class _Nearest:
    """The ``k`` largest cosines each class has been offered so far (values only, in no order).

    :meth:`offer` hands one tile of cosines to the classes of its rows (``dim=1``: row ``r`` goes
    to class ``start + r``) or of its columns (``dim=0``: column ``c`` goes to class ``start + c``).
    Until a block of classes holds ``k`` real cosines it takes a plain top-k of the tile. After that
    it takes only the cosines above each class's ``threshold``, the smallest of its ``k`` values at
    the block's last merge, which are few: a smaller one cannot enter the k largest, and an equal
    one would not change their values. They wait, per block, until there are ``k`` per class, and
    are then merged (as they are by :meth:`finish`).
    """

    def __init__(self, num_classes: int, k: int, chunk: int, dtype: torch.dtype, device: torch.device):
        self.k, self.chunk = k, chunk
        self.values = torch.full((num_classes, k), float("-inf"), dtype=dtype, device=device)
        self.threshold = torch.full((num_classes,), float("-inf"), dtype=dtype, device=device)
        self.seen: dict[int, int] = {}  # block start -> how many other classes each of its classes was offered
        self.waiting: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # block start -> (class, cosine)
        self.mask = torch.empty(-(-chunk * chunk // 8) * 8, dtype=torch.bool, device=device)  # for every tile
        self.index_dtype = torch.int16 if chunk <= 2**15 else torch.int32  # small keys sort fastest

    def offer(self, start: int, cos: torch.Tensor, dim: int, own_block: bool = False) -> None:
        """Offer ``cos`` along ``dim`` to the classes from ``start`` on (``own_block``: its diagonal is -inf)."""
        rows, cols = cos.shape
        stop = start + (rows if dim == 1 else cols)
        if self.seen.get(start, 0) >= self.k:
            threshold = self.threshold[start:stop]
            size = -(-rows * cols // 8) * 8
            torch.gt(cos, threshold[:, None] if dim == 1 else threshold[None, :], out=self.mask[: rows * cols].view(rows, cols))
            self.mask[rows * cols : size] = False  # the last word's padding
            flat = _set_flags(self.mask[:size], limit=rows * cols // 16)
            if flat is not None:  # else not sparse: a plain top-k below
                group = flat // cols if dim == 1 else flat % cols
                waiting = self.waiting.setdefault(start, [])
                waiting.append((group.to(self.index_dtype), cos.view(-1).index_select(0, flat)))
                if sum(len(c) for c, _ in waiting) >= self.k * (stop - start):
                    self._merge_waiting(start, stop)
                self.seen[start] += cos.shape[dim]
                return
        top = cos.topk(min(self.k, cos.shape[dim]), dim=dim, sorted=False).values
        best = self.values[start:stop]
        best.copy_(torch.cat([best, top if dim == 1 else top.T], dim=1).topk(self.k, dim=1, sorted=False).values)
        self.threshold[start:stop] = best.amin(dim=1)
        self.seen[start] = self.seen.get(start, 0) + cos.shape[dim] - (1 if own_block else 0)

    def finish(self) -> torch.Tensor:
        """The k largest cosines of every class (num_classes, k), once what waits is merged."""
        for start in list(self.waiting):
            self._merge_waiting(start, min(start + self.chunk, len(self.values)))
        return self.values

    def _merge_waiting(self, start: int, stop: int) -> None:
        pieces = self.waiting.pop(start)
        group, new = torch.cat([c for c, _ in pieces]), torch.cat([v for _, v in pieces])
        best = self.values[start:stop]
        classes, k = best.shape
        group, new, slot, width = _by_group(group, new, classes)
        if width > 4 * k:  # one class got many: keep its k largest first, so that the pool stays small
            new, order = new.sort(descending=True, stable=True)
            group, new, slot, width = _by_group(group[order], new, classes)
            keep = slot < k
            group, new, slot, width = group[keep], new[keep], slot[keep], k
        pool = best.new_full((classes, k + width), float("-inf"))
        pool[:, :k] = best
        pool[group, k + slot] = new
        best.copy_(pool.topk(k, dim=1, sorted=False).values)
        self.threshold[start:stop] = best.amin(dim=1)


def _set_flags(mask: torch.Tensor, limit: int) -> torch.Tensor | None:
    """Positions of the set flags in ``mask`` (length a multiple of 8), ascending; None if over ``limit``.

    The mask is read as int64 words first: when few flags are set, few words hold one, and only
    those are looked into.
    """
    words = mask.view(torch.int64)
    hit = words.nonzero().squeeze(1)
    if len(hit) > limit:
        return None
    word, byte = words.index_select(0, hit).view(torch.bool).view(-1, 8).nonzero().unbind(1)
    return hit.index_select(0, word) * 8 + byte


def _by_group(group: torch.Tensor, values: torch.Tensor, groups: int):
    """``group`` and ``values`` sorted by group (stably), each one's slot within its group, and the
    largest group's size."""
    group, order = group.sort(stable=True)
    group = group.long()
    counts = torch.bincount(group, minlength=groups)
    slot = torch.arange(len(group), device=group.device) - (torch.cumsum(counts, 0) - counts)[group]
    return group, values[order], slot, int(counts.max())


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
        Rows per block; memory is about ``chunk x chunk`` floats (and as many bytes), ``k`` floats
        per class and a normalised copy of ``weight``. The result does not depend on it.

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
    norm = weight.to(dtype).norm(dim=1, keepdim=True).clamp_min(1e-12)  # as F.normalize, block by block
    chunk = min(chunk, num_classes)
    rows = torch.empty(chunk, weight.shape[1], dtype=dtype, device=weight.device)
    cols = torch.empty_like(rows)
    tile = torch.empty(chunk * chunk, dtype=dtype, device=weight.device)  # one buffer for every tile
    nearest = _Nearest(num_classes, k, chunk, dtype, weight.device)
    blocks = range(0, num_classes, chunk)
    # cos is symmetric: each pair of blocks once, the diagonal ones first
    for a, b in [(a, a) for a in blocks] + [(a, b) for a in blocks for b in blocks if b > a]:
        x = torch.div(weight[a : a + chunk], norm[a : a + chunk], out=rows[: min(chunk, num_classes - a)])
        y = x if a == b else torch.div(weight[b : b + chunk], norm[b : b + chunk], out=cols[: min(chunk, num_classes - b)])
        cos = torch.mm(x, y.T, out=tile[: len(x) * len(y)].view(len(x), len(y)))
        if a == b:
            cos.fill_diagonal_(float("-inf"))  # a class is not its own neighbour
        nearest.offer(a, cos, dim=1, own_block=a == b)  # rows: block a's cosines to block b
        if a != b:
            nearest.offer(b, cos, dim=0)  # columns: block b's cosines to block a
    ic = torch.logsumexp(s * nearest.finish().sort(dim=1, descending=True).values, dim=1)
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
