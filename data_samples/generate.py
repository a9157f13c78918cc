"""Regenerate every file under data_samples/ (seeded, deterministic): `python data_samples/generate.py`."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from datasets import ClassLabel, Dataset, Features, Image, List, Value  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from PIL import ImageDraw  # noqa: E402

ROOT = Path(__file__).resolve().parent
SEED = 1234

SPLITS_YAML = """---
configs:
- config_name: default
  data_files:
{files}
---
"""


def _png(image: PILImage.Image) -> dict:
    """Encode an image as PNG bytes for a datasets Image column (no timestamps: deterministic)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return {"bytes": buf.getvalue(), "path": None}


def _write(name: str, splits: dict[str, Dataset], card: str, layout: dict[str, tuple[str, str]] | None = None) -> None:
    """Write splits as parquet under data_samples/<name>/ with a dataset card naming the files of each split:
    data/<split>-00000-of-00001.parquet, or the hub repository's own layout, `layout[split]` = (file, pattern)."""
    out = ROOT / name
    shutil.rmtree(out, ignore_errors=True)
    layout = {s: (layout or {}).get(s, (f"data/{s}-00000-of-00001.parquet", f"data/{s}-*")) for s in splits}
    files = "\n".join(f"  - split: {s}\n    path: {layout[s][1]}" for s in splits)
    for split, ds in splits.items():
        (out / layout[split][0]).parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(out / layout[split][0]))
    (out / "README.md").write_text(SPLITS_YAML.format(files=files) + card)


# ----------------------------------------------------------------------------- ChartQA-like
TOPICS = [
    ("Share of adults who own a smartphone", "%"),
    ("Annual revenue of a coffee chain (million USD)", ""),
    ("Number of electric cars sold (thousands)", ""),
    ("Average monthly rainfall (mm)", ""),
    ("Unemployment rate", "%"),
    ("Visitors to national parks (millions)", ""),
    ("Household spending on energy (USD)", ""),
    ("Share of renewable electricity", "%"),
]
COUNTRIES = ["Germany", "France", "Japan", "Brazil", "Canada", "India", "Kenya", "Spain", "Mexico", "Norway"]
SEGMENTS = ["Online", "Retail", "Wholesale", "Export", "Services", "Other"]
SIZES = [(800, 600), (850, 600), (800, 557), (760, 600)]


def _chart(rng: random.Random) -> tuple[PILImage.Image, dict]:
    """Render one bar, line or pie chart and return it with the numbers it shows."""
    kind = rng.choice(["bar", "bar", "line", "pie"])
    title, unit = rng.choice(TOPICS)
    if kind == "pie":
        labels = rng.sample(SEGMENTS, rng.randint(3, 5))
        raw = [rng.randint(5, 40) for _ in labels]
        values = [round(100 * r / sum(raw)) for r in raw]
        values[-1] = 100 - sum(values[:-1])
        unit, title = "%", "Sales by channel"
    elif kind == "line":
        start = rng.randint(2008, 2014)
        labels = [str(y) for y in range(start, start + rng.randint(6, 9))]
        v = rng.uniform(10, 60)
        values = []
        for _ in labels:
            v = max(1.0, v + rng.uniform(-8, 9))
            values.append(round(v, 1))
    else:
        labels = rng.sample(COUNTRIES, rng.randint(4, 7))
        values = [round(rng.uniform(2, 90), rng.choice([0, 1])) for _ in labels]
    width, height = rng.choice(SIZES)
    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    fmt = [f"{v:g}{unit}" for v in values]
    if kind == "pie":
        ax.pie(values, labels=[f"{lab} ({f})" for lab, f in zip(labels, fmt)], startangle=90, counterclock=False)
    elif kind == "line":
        ax.plot(labels, values, marker="o", color="#1f77b4")
        for x, y, f in zip(labels, values, fmt):
            ax.annotate(f, (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_ylim(0, max(values) * 1.2)
    else:
        bars = ax.barh(labels, values, color="#2a6fbb") if rng.random() < 0.5 else ax.bar(labels, values)
        ax.bar_label(bars, labels=fmt, fontsize=8, padding=2)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    image = PILImage.open(buf).convert("RGB")
    return image, {"kind": kind, "labels": labels, "values": values, "unit": unit}


def _num(x: float) -> str:
    """Format a number the way ChartQA labels do: integers plain, others up to 9 decimals."""
    return str(int(x)) if float(x).is_integer() else f"{x:.9g}"


def _question(rng: random.Random, spec: dict) -> tuple[str, str, int]:
    """Ask a question whose answer is computed from the plotted numbers; returns (query, answer, human_or_machine)."""
    labels, values = spec["labels"], spec["values"]
    i, j = rng.sample(range(len(labels)), 2)
    hi = labels[values.index(max(values))]
    human = [
        (f"What is the value for {labels[i]}?", _num(values[i])),
        ("Which category has the highest value?" if spec["kind"] != "line" else "In which year was the value highest?", hi),
        (f"Is the value for {labels[i]} greater than the value for {labels[j]}?", "Yes" if values[i] > values[j] else "No"),
    ]
    machine = [
        (f"What is the difference between {labels[i]} and {labels[j]}?", _num(round(values[i] - values[j], 6))),
        (f"What is the average of {labels[i]} and {labels[j]}?", _num(round((values[i] + values[j]) / 2, 9))),
        (f"What is the ratio of {labels[i]} to {labels[j]}?", _num(round(values[i] / values[j], 9))),
        ("What is the sum of all values?", _num(round(sum(values), 6))),
    ]
    if rng.random() < 0.5:
        q, a = rng.choice(human)
        return q, a, 0
    q, a = rng.choice(machine)
    return q, a, 1


def make_chartqa(rng: random.Random) -> None:
    """ChartQA-like train/val/test with the hub schema."""
    features = Features(
        {
            "image": Image(),
            "query": Value("string"),
            "label": List(Value("string")),
            "human_or_machine": ClassLabel(names=["human", "machine"]),
        }
    )
    splits = {}
    for split, n in [("train", 64), ("val", 16), ("test", 32)]:
        rows = {"image": [], "query": [], "label": [], "human_or_machine": []}
        for _ in range(n):
            image, spec = _chart(rng)
            q, a, hm = _question(rng, spec)
            for key, value in zip(rows, (_png(image), q, [a], hm)):
                rows[key].append(value)
        splits[split] = Dataset.from_dict(rows, features=features)
    _write("chartqa", splits, "\n# ChartQA-like sample\nSynthetic charts with computed answers; see ../README.md.\n")


# ----------------------------------------------------------------------------- scenes (RLAIF-V, AMBER)
COLORS = {"red": "#d62728", "blue": "#1f77b4", "green": "#2ca02c", "yellow": "#f2c80f", "purple": "#9467bd"}
OBJECTS = ["ball", "box", "tree", "sun", "house", "car", "cloud"]


def _scene(rng: random.Random, size: tuple[int, int] = (640, 480)) -> tuple[PILImage.Image, dict[str, str]]:
    """Draw a simple outdoor scene; returns the image and {object: colour} of what is in it."""
    w, h = size
    img = PILImage.new("RGB", size, "#bfe3ff")
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(h * 0.7), w, h], fill="#7cc46b")
    present = {o: rng.choice(list(COLORS)) for o in rng.sample(OBJECTS, rng.randint(2, 4))}
    for k, (obj, colour) in enumerate(present.items()):
        c = COLORS[colour]
        x = int(w * (0.12 + 0.22 * k))
        if obj == "sun":
            present[obj] = "yellow"
            d.ellipse([w - 130, 30, w - 50, 110], fill=COLORS["yellow"])
        elif obj == "cloud":
            present[obj] = "white"
            for dx in (0, 35, 70):
                d.ellipse([x + dx, 40, x + dx + 60, 90], fill="white")
        elif obj == "ball":
            d.ellipse([x, int(h * 0.7) - 50, x + 50, int(h * 0.7)], fill=c)
        elif obj == "box":
            d.rectangle([x, int(h * 0.7) - 70, x + 70, int(h * 0.7)], fill=c)
        elif obj == "tree":
            present[obj] = "green"
            d.rectangle([x + 25, int(h * 0.7) - 80, x + 40, int(h * 0.7)], fill="#8b5a2b")
            d.ellipse([x - 5, int(h * 0.7) - 170, x + 70, int(h * 0.7) - 70], fill=COLORS["green"])
        elif obj == "house":
            base = int(h * 0.7)
            d.rectangle([x, base - 90, x + 100, base], fill=c)
            d.polygon([(x - 10, base - 90), (x + 50, base - 140), (x + 110, base - 90)], fill="#8c2d19")
        elif obj == "car":
            base = int(h * 0.7) + 20
            d.rectangle([x, base - 45, x + 120, base - 15], fill=c)
            d.ellipse([x + 10, base - 30, x + 40, base], fill="black")
            d.ellipse([x + 80, base - 30, x + 110, base], fill="black")
    return img, present


def _describe(objs: dict[str, str]) -> str:
    """Faithful one-sentence description of a scene."""
    parts = [f"a {c} {o}" if o not in ("sun",) else "the sun" for o, c in objs.items()]
    return "The image shows " + ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] + " on a sunny meadow."


def make_rlaif_v(rng: random.Random) -> None:
    """RLAIF-V-like preference rows: chosen describes the scene, rejected hallucinates an object or a colour."""
    questions = ["Describe the image.", "What objects can you see in this picture?", "Describe this scene in detail."]
    rows: dict[str, list] = {k: [] for k in ["ds_name", "image", "question", "chosen", "rejected", "origin_dataset", "origin_split", "idx", "image_path"]}
    for idx in range(40):
        image, objs = _scene(rng)
        absent = [o for o in OBJECTS if o not in objs]
        wrong = dict(objs)
        if rng.random() < 0.5 and absent:
            wrong[rng.choice(absent)] = rng.choice(list(COLORS))
        else:
            key = rng.choice([o for o in objs if o not in ("sun", "cloud", "tree")] or list(objs))
            wrong[key] = rng.choice([c for c in COLORS if c != objs[key]])
        values = ["scenes", _png(image), rng.choice(questions), _describe(objs), _describe(wrong), "synthetic-scenes", "train", str(idx), f"scenes/{idx:05d}.png"]
        for key, value in zip(rows, values):
            rows[key].append(value)
    features = Features({k: (Image() if k == "image" else Value("string")) for k in rows})
    # the hub's layout: RLAIF-V-Dataset_000.parquet, _001, ... at the top of the repository (notebook 01 names the first)
    _write("rlaif_v", {"train": Dataset.from_dict(rows, features=features)}, "\n# RLAIF-V-like sample\nSee ../README.md.\n",
           layout={"train": ("RLAIF-V-Dataset_000.parquet", "RLAIF-V-Dataset_*.parquet")})


def make_amber(rng: random.Random) -> None:
    """AMBER-style discriminative yes/no queries and annotations, with their images."""
    out = ROOT / "amber"
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    queries, annotations, qid = [], [], 1005
    for n in range(12):
        image, objs = _scene(rng)
        name = f"AMBER_{n + 1}.png"
        image.save(out / "images" / name, optimize=True)
        absent = [o for o in OBJECTS if o not in objs]
        # AMBER's own `type` values: existence is "discriminative-hallucination"; relation queries whose truth is
        # "yes" are "discriminative-relation" and those whose truth is "no" are "relation" (as in its annotations.json)
        asks = [(f"Is there a {o} in this image?", "yes", "discriminative-hallucination") for o in rng.sample(list(objs), 2)]
        asks += [(f"Is there a {o} in this image?", "no", "discriminative-hallucination")
                 for o in rng.sample(absent, min(2, len(absent)))]
        coloured = [o for o, c in objs.items() if c in COLORS and o not in ("sun", "tree")]
        if coloured:
            o = rng.choice(coloured)
            c = objs[o] if rng.random() < 0.5 else rng.choice([k for k in COLORS if k != objs[o]])
            asks.append((f"Is the {o} {c}?", "yes" if c == objs[o] else "no", "discriminative-attribute-state"))
        ground = [o for o in objs if o not in ("sun", "cloud")]  # drawn left to right in dict order
        if len(ground) >= 2:
            a, b = rng.sample(ground, 2)
            left = ground.index(a) < ground.index(b)
            asks.append((f"Is the {a} to the left of the {b} in this image?", "yes" if left else "no",
                         "discriminative-relation" if left else "relation"))
        for query, truth, kind in asks:
            queries.append({"id": qid, "image": name, "query": query})
            annotations.append({"id": qid, "type": kind, "truth": truth})
            qid += 1
    (out / "query_discriminative.json").write_text(json.dumps(queries, indent=1) + "\n")
    (out / "annotations.json").write_text(json.dumps(annotations, indent=1) + "\n")


# ----------------------------------------------------------------------------- Amazon-product-like
PRODUCTS = [
    ("Ceramic Coffee Mug", "Home & Kitchen | Kitchen & Dining | Drinkware", "mug"),
    ("Wooden Puzzle Cube", "Toys & Games | Puzzles | Brain Teasers", "cube"),
    ("Desk Lamp", "Home & Kitchen | Lighting | Desk Lamps", "lamp"),
    ("Kids Backpack", "Clothing, Shoes & Jewelry | Luggage | Backpacks", "bag"),
    ("Plush Teddy Bear", "Toys & Games | Stuffed Animals & Plush Toys", "bear"),
    ("Stainless Water Bottle", "Sports & Outdoors | Hydration | Water Bottles", "bottle"),
    ("Building Blocks Set", "Toys & Games | Building Toys | Blocks", "cube"),
    ("Round Wall Clock", "Home & Kitchen | Home Decor | Clocks", "clock"),
]


def _product(rng: random.Random, shape: str, colour: str) -> PILImage.Image:
    """Draw a product shot on a white background."""
    img = PILImage.new("RGB", (500, 500), "white")
    d = ImageDraw.Draw(img)
    c = COLORS[colour]
    if shape in ("mug", "bottle"):
        d.rectangle([170, 140, 330, 380] if shape == "mug" else [210, 90, 290, 410], fill=c)
        if shape == "mug":
            d.ellipse([310, 190, 390, 310], outline=c, width=18)
    elif shape in ("cube", "bag"):
        d.rectangle([140, 140, 360, 360], fill=c, outline="black", width=4)
    elif shape == "lamp":
        d.polygon([(180, 120), (320, 120), (360, 220), (140, 220)], fill=c)
        d.rectangle([240, 220, 260, 380], fill="gray")
        d.rectangle([180, 380, 320, 400], fill="gray")
    else:
        d.ellipse([130, 130, 370, 370], fill=c, outline="black", width=4)
    return img


def make_amazon(rng: random.Random) -> None:
    """Amazon-product-like rows with all 14 hub columns."""
    cols = ["image", "Uniq Id", "Product Name", "Category", "Selling Price", "Model Number", "About Product",
            "Product Specification", "Technical Details", "Shipping Weight", "Variants", "Product Url",
            "Is Amazon Seller", "description"]
    rows: dict[str, list] = {c: [] for c in cols}
    for n in range(16):
        name, category, shape = PRODUCTS[n % len(PRODUCTS)]
        colour = rng.choice(list(COLORS))
        full = f"{colour.title()} {name}"
        price = f"${rng.randint(5, 60)}.{rng.choice(['99', '49', '95'])}"
        weight = f"{rng.uniform(0.2, 3):.1f} pounds"
        about = f"Make sure this fits by entering your model number. | {colour.title()} finish | Durable and easy to clean"
        desc = (f"Brighten your day with this {colour} {name.lower()}. Durable, easy to clean and made to last, "
                f"it is a great gift for every age. Ships at {weight}.")
        values = [_png(_product(rng, shape, colour)), hashlib.md5(f"{SEED}-{n}".encode()).hexdigest(), full, category,
                  price, f"VC-{1000 + n}", about, f"Product Dimensions: {rng.randint(4, 20)} x {rng.randint(4, 20)} inches | Shipping Weight: {weight}",
                  "Material: synthetic | Colour: " + colour, weight, "", f"https://example.com/products/{n}", rng.choice(["Y", "N"]), desc]
        for c, v in zip(cols, values):
            rows[c].append(v)
    features = Features({c: (Image() if c == "image" else Value("string")) for c in cols})
    _write("amazon_products", {"train": Dataset.from_dict(rows, features=features)}, "\n# Amazon-product-like sample\nSee ../README.md.\n")


def main() -> None:
    """Generate all samples from one seed."""
    make_chartqa(random.Random(SEED))
    make_rlaif_v(random.Random(SEED + 1))
    make_amber(random.Random(SEED + 2))
    make_amazon(random.Random(SEED + 3))


if __name__ == "__main__":
    main()
