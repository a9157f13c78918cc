"""Data preparation on the CPU: validation and formatting time per 1,000 rows, one process against several.

Notebook 01 validates and formats every ChartQA and RLAIF-V row it loads; this measures what that costs, with
synthetic sets of the real image sizes (nothing is downloaded):
- ChartQA-sized rows carry the shipped sample's charts (data_samples/chartqa: matplotlib PNGs, 760-850 x 557-600 px,
  about 20 kB; the hub's train files hold about 30 kB a row: 845 MB for 28.3k rows);
- RLAIF-V-sized rows carry photo-like JPEGs of 640x480 px at quality 90, about 150 kB (the hub's files: over 10 GB
  for 83.1k rows), with answers of RLAIF-V's length.
Each set is written as parquet and loaded with `load_dataset("parquet", ...)`: memory-mapped arrow, as a hub data set.

Per set and per process count it times (wall clock, the best of --repeats runs, and the CPU time of that run,
workers included) `validate` (every image decoded: what catches a truncated file), the
formatter map of `format_dataset` (`format_validated`: stored image bytes moved, nothing decoded or re-encoded), and,
for comparison, a plain `clean.map(formatter)` over decoded images (every image saved again, as datasets does for a
PIL image: PNG encodes, JPEG re-compresses); and, in one process, reading every image's size from its header against
decoding it. The formatted rows of every process count must be identical.

    tools/tiny-env .venv/bin/python benchmarks/data_prep.py [--rows 1000] [--procs 2]
      -> benchmarks/results/data-prep-<device>.json   (--tiny: 16 rows, one run, -> data-prep-cpu-tiny.json)
"""

from __future__ import annotations

import io
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from bench import arguments, environment, save_report
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # helpers, for `python benchmarks/data_prep.py` from any folder

KINDS = ("chartqa", "rlaif_v")
IMAGES = {
    "chartqa": "PNG charts of data_samples/chartqa (760-850 x 557-600 px, ~20 kB), repeated",
    "rlaif_v": "photo-like JPEGs, 640x480 px, quality 90 (~150 kB), 16 distinct, repeated",
}


def chart_images() -> list[bytes]:
    """The PNG bytes of the shipped ChartQA sample's charts (train split)."""
    import pyarrow.parquet as pq

    table = pq.read_table(next((ROOT / "data_samples" / "chartqa" / "data").glob("train-*.parquet")), columns=["image"])
    return [cell["bytes"] for cell in table.column("image").to_pylist()]


def photo_images(n: int = 16, seed: int = 0) -> list[bytes]:
    """`n` photo-like 640x480 JPEGs: smooth colour fields with edges, shapes and sensor-like noise (JPEG sizes of
    camera photos, unlike flat drawings)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((640, 480), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, 600)), int(rng.integers(0, 440))
            w, h = int(rng.integers(20, 200)), int(rng.integers(20, 200))
            draw.ellipse((x, y, x + w, y + h), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        image = image.filter(ImageFilter.GaussianBlur(1.5))
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 10, (480, 640, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def columns(kind: str, n: int) -> tuple[dict[str, list], Any]:
    """`n` rows of `kind` (the hub data set's columns) and their features."""
    from datasets import ClassLabel, Features, List, Value
    from datasets import Image as ImageFeature

    if kind == "chartqa":
        images = chart_images()
        data = {"image": [{"bytes": images[i % len(images)], "path": None} for i in range(n)],
                "query": [f"What is the value of the tallest bar in {2000 + i % 20}?" for i in range(n)],
                "label": [[str(i % 97)] for i in range(n)],
                "human_or_machine": [i % 2 for i in range(n)]}
        return data, Features({"image": ImageFeature(), "query": Value("string"), "label": List(Value("string")),
                               "human_or_machine": ClassLabel(names=["human", "machine"])})
    images = photo_images()
    answer = ("The image shows a street scene with a red car parked next to a tree, a person walking a dog on the "
              "pavement and a row of houses with white windows in the background. ") * 3
    data = {"ds_name": ["RLAIF-V"] * n, "image": [{"bytes": images[i % len(images)], "path": None} for i in range(n)],
            "question": [f"Describe the image {i} in detail." for i in range(n)],
            "chosen": [answer + f"({i})" for i in range(n)],
            "rejected": [answer.replace("a red car", "a blue bus") + f"({i})" for i in range(n)],
            "origin_dataset": ["coco"] * n, "origin_split": ["train"] * n, "idx": [str(i) for i in range(n)],
            "image_path": [f"coco/{i:012d}.jpg" for i in range(n)]}
    return data, Features({k: ImageFeature() if k == "image" else Value("string") for k in data})


def load(kind: str, n: int, folder: Path) -> Any:
    """The synthetic set as a hub data set loads: parquet -> memory-mapped arrow in `folder`."""
    from datasets import Dataset, load_dataset

    data, features = columns(kind, n)
    path = folder / f"{kind}.parquet"
    Dataset.from_dict(data, features=features).to_parquet(str(path))
    return load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(folder / "cache"))


def decoded_size(data: bytes) -> tuple[int, int]:
    """An image's size after decoding all of it (what reading `image.size` of a decoded Image column costs)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.size


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process and of the worker processes it waited for, result) of one call."""
    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    return wall, cpu, result


def drop_cache(dataset: Any) -> None:
    """Delete the cache files a map wrote (the formatted copies are as large as the data set)."""
    for f in dataset.cache_files:
        Path(f["filename"]).unlink(missing_ok=True)


def measure(kind: str, n: int, procs: list[int], repeats: int, folder: Path) -> dict[str, Any]:
    """Seconds per 1,000 rows of each step (wall: the best of `repeats` runs; CPU: of that run), per process count,
    for `n` rows of `kind`."""
    from datasets import List
    from datasets import Image as ImageFeature

    from helpers.data import FORMATTERS, format_validated, validate

    dataset = load(kind, n, folder)
    source = [cell["bytes"] for cell in dataset.cast_column("image", ImageFeature(decode=False))["image"]]
    steps = ("validate", "format", "plain_map")
    out: dict[str, Any] = {step: {} for step in steps} | {f"{step}_cpu": {} for step in steps}
    reference = None

    def record(step: str, p: int, fn: Callable[[], Any]) -> list[Any]:
        """Run `fn` `repeats` times; keep the fastest wall time and its CPU time; return every run's result."""
        runs = [timed(fn) for _ in range(repeats)]
        wall, cpu, _ = min(runs, key=lambda run: run[0])
        out[step][str(p)], out[f"{step}_cpu"][str(p)] = round(wall * 1000 / n, 2), round(cpu * 1000 / n, 2)
        return [result for _, _, result in runs]

    for p in procs:
        clean, bad = record("validate", p, lambda: validate(dataset, kind, num_proc=p))[-1]
        formatted = record("format", p, lambda: format_validated(clean, kind, num_proc=p, load_from_cache_file=False))
        stored = formatted[-1].cast_column("images", List(ImageFeature(decode=False)))
        rows = [(r["images"][0]["bytes"], r["prompt"], r.get("completion") or r["chosen"]) for r in stored]
        reference = reference or (rows, bad)
        assert (rows, bad) == reference, f"{kind}: {p} processes give other rows than {procs[0]}"
        assert not bad and [r[0] for r in rows] == source, "format_validated keeps every image's stored bytes"
        plain = record("plain_map", p, lambda: clean.map(FORMATTERS[kind], remove_columns=clean.column_names,
                                                        num_proc=p, load_from_cache_file=False))
        saved = plain[-1].cast_column("images", List(ImageFeature(decode=False)))["images"]
        out["plain_map_rewrites"] = sum(images[0]["bytes"] != data for images, data in zip(saved, source))
        for result in formatted + plain:
            drop_cache(result)
    stored = dataset.cast_column("image", ImageFeature(decode=False))["image"]
    wall, _, header = timed(lambda: [Image.open(io.BytesIO(cell["bytes"])).size for cell in stored])
    out["sizes_header"] = round(wall * 1000 / n, 3)
    wall, _, decoded = timed(lambda: [decoded_size(cell["bytes"]) for cell in stored])
    out["sizes_decode"] = round(wall * 1000 / n, 3)
    assert header == decoded
    out["rows"], out["bad_rows"] = n, len(reference[1])
    return out


def main(argv: list[str] | None = None) -> Path:
    """Measure both sets, save the report, print a summary."""
    parser = arguments(__doc__)
    parser.add_argument("--rows", type=int, help="rows per data set (default 1000; --tiny: 16)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each step, the fastest kept (--tiny: 1)")
    parser.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1),
                        help="the several processes, against one (default: 2, or 1 on a one-core machine)")
    args = parser.parse_args(argv)
    rows, repeats = (args.rows or 16, 1) if args.tiny else (args.rows or 1000, args.repeats)
    procs = sorted({1, max(1, args.procs)})
    import datasets
    import PIL

    folder = Path(tempfile.mkdtemp(prefix="data-prep-"))
    load_before = os.getloadavg()
    try:
        results = {kind: measure(kind, rows, procs, repeats, folder) for kind in KINDS}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("model name")),
                 platform.processor() or "?")
    env = environment()
    env["device"] = f"cpu-{platform.machine()}"  # a CPU measurement, even on a machine with a GPU
    env["versions"] |= {"datasets": datasets.__version__, "pillow": PIL.__version__}
    report = env | {
        "command": "python benchmarks/data_prep.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "tiny": args.tiny, "cpu": model, "cores": os.cpu_count(), "procs": procs, "repeats": repeats, "images": IMAGES,
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "seconds_per_1000_rows": results,
    }
    for kind, r in results.items():
        steps = ", ".join(f"{step} " + " / ".join(f"{r[step][str(p)]:.1f} s" for p in procs)
                          for step in ("validate", "format", "plain_map"))
        print(f"{kind} ({r['rows']} rows; {' / '.join(map(str, procs))} processes): {steps}; sizes from headers "
              f"{r['sizes_header']:.2f} s, by decoding {r['sizes_decode']:.2f} s")
    return save_report(report, "data-prep", args.out, args.tiny)


if __name__ == "__main__":
    main()
