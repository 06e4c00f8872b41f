"""How fast the face data readers are, on one core.

Packs N 112x112 JPEGs (LFW-a faces resized to 112 when ``$DBREPRO_LFW`` or ``../shared/data``
holds LFW, synthetic smooth images otherwise) into an image folder and, from that folder, a
``.rec`` (the same JPEG bytes), then measures in one run:

- images read and decoded per second from the ``.rec`` and from the folder,
- records read per second without decoding,
- the time to open a large ``.rec`` (labels at open): InsightFace layout (labels from the
  identity records) vs im2rec layout (labels from a vectorised scan of every record header).

Usage: ``python benchmarks/bench_formats.py [--images 2000] [--records 100000]``
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dbrepro.data.formats import LFW_CROP, ImageFolderFaces, RecordIODataset, decode_image, write_recordio


def lfw_root() -> Path | None:
    root = Path(os.environ.get("DBREPRO_LFW", Path(__file__).resolve().parents[2] / "shared" / "data")) / "lfw"
    return root if root.is_dir() else None


def make_folder(out: Path, n: int, per_identity: int = 10) -> str:
    """``n`` 112x112 JPEGs in ``out/<identity>/``; returns where the pixels came from."""
    source = lfw_root()
    paths = sorted(source.glob("*/*.jpg"))[:n] if source else []
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:112, 0:112]
    for i in range(n):
        folder = out / f"id{i // per_identity:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        if i < len(paths):
            pixels = decode_image(paths[i], image_size=112, crop=LFW_CROP).permute(1, 2, 0).numpy()
        else:
            f = rng.uniform(0.05, 0.3, 3)
            pixels = np.stack([(np.sin(xx * f[c] + yy * f[2 - c]) * 100 + 128) for c in range(3)], -1).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=95)
    return f"LFW-a ({source})" if len(paths) == n else "synthetic"


def best_rates(cases: dict, count: int, repeat: int = 3) -> dict[str, float]:
    """Best items per second of each case over ``repeat`` rounds; the cases are interleaved
    within a round, so a busy machine slows them alike."""
    best = {name: float("inf") for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return {name: count / sec for name, sec in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--records", type=int, default=100_000, help="records in the label-reading test")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        origin = make_folder(tmp / "folder", args.images)
        t = time.perf_counter()
        write_recordio(tmp / "folder", tmp / "rec")
        pack_s = time.perf_counter() - t

        rec = RecordIODataset(tmp / "rec")
        folder = ImageFolderFaces(tmp / "folder", image_size=None)
        n = len(rec)
        rows = list(best_rates({
            "decode from .rec": lambda: [rec[i] for i in range(n)],
            "decode from image folder": lambda: [folder[i] for i in range(n)],
            "read .rec record, no decode": lambda: [rec.read_record(i) for i in range(n)],
            "read folder file, no decode": lambda: [Path(p).read_bytes() for p in folder.paths],
        }, n).items())
        print(f"{n} images of 112x112, {origin}; packed into .rec in {pack_s:.2f} s "
              f"({(tmp / 'rec' / 'train.rec').stat().st_size / n / 1024:.1f} KiB per record)\n")
        print(f"{'one core':<32}{'images/s':>12}{'vs folder':>12}")
        base = rows[1][1]
        for name, r in rows:
            print(f"{name:<32}{r:>12,.0f}{r / base:>11.2f}x")

        # labels at open on a large file: every record is the same tiny JPEG
        buf = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="JPEG")
        tiny = buf.getvalue()
        labels = np.sort(np.random.default_rng(0).zipf(1.6, args.records) % 5000)
        items = [(tiny, int(lab)) for lab in labels]
        write_recordio(items, tmp / "big_header")
        write_recordio(items, tmp / "big_im2rec", header=False)
        timings = []
        for name in ("big_header", "big_im2rec"):
            t = time.perf_counter()
            ds = RecordIODataset(tmp / name)
            timings.append((ds.layout, time.perf_counter() - t, len(ds), ds.num_classes))
            assert np.array_equal(ds.labels, labels)
        print(f"\n{'open (labels at open)':<32}{'seconds':>12}{'records':>12}{'classes':>10}")
        for layout, sec, count, classes in timings:
            print(f"{layout + ' layout':<32}{sec:>12.3f}{count:>12,}{classes:>10,}")
        scale = 5.8e6 / args.records
        print(f"\nextrapolated to MS1MV2 (5.8M records, 85K classes): im2rec scan ~{timings[1][1] * scale:.1f} s "
              "(+ disk reads); the InsightFace layout reads only the identity records")


if __name__ == "__main__":
    main()
