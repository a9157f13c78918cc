"""Format ChartQA, RLAIF-V and Amazon product rows into TRL's conversational formats, and validate them first."""

from __future__ import annotations

import io
import os
from typing import Any

from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from helpers.vision import prepare_image

CHARTQA_SYSTEM = ("You are a chart analyst. Answer with a single number, word or short phrase read from the chart, "
                  "with no explanation.")
PRODUCT_SYSTEM = "You are a copywriter. Write a short, factual product description from the photo and details."

REQUIRED = {
    "chartqa": ["image", "query", "label"],
    "rlaif_v": ["image", "question", "chosen", "rejected"],
    "product": ["image", "Product Name", "Category", "description"],
}


def _text(content: str) -> list[dict[str, Any]]:
    """A text-only message content."""
    return [{"type": "text", "text": content}]


def _image_then(content: str) -> list[dict[str, Any]]:
    """A user content with one image placeholder, filled by TRL from the `images` column, then text."""
    return [{"type": "image"}, {"type": "text", "text": content}]


def _clean(value: Any, field: str) -> str:
    """Return `value` stripped, or raise ValueError naming `field` when it is empty or not a string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"empty {field}")
    return value.strip()


def _image(example: dict[str, Any]) -> Image.Image:
    """The row's image as bounded RGB; raises ValueError when missing or undecodable."""
    image = example.get("image")
    if isinstance(image, dict):  # undecoded {"bytes", "path"}: bytes from parquet, a path from local image files
        source = io.BytesIO(image["bytes"]) if image.get("bytes") else image.get("path")
        if not source or (isinstance(source, str) and not os.path.exists(source)):
            raise ValueError("missing image")
        try:
            image = Image.open(source)
            image.load()
        except Exception as err:  # PIL raises many types for corrupt data
            raise ValueError(f"undecodable image ({type(err).__name__})") from None
    if not isinstance(image, Image.Image):
        raise ValueError("missing image")
    return prepare_image(image)


def format_chartqa(example: dict[str, Any]) -> dict[str, Any]:
    """ChartQA row -> prompt/completion: [system, user(image, query)] -> [assistant(label[0])]."""
    labels = example.get("label")
    label = labels[0] if isinstance(labels, list) and labels else labels
    return {
        "images": [_image(example)],
        "prompt": [{"role": "system", "content": _text(CHARTQA_SYSTEM)},
                   {"role": "user", "content": _image_then(_clean(example.get("query"), "query"))}],
        "completion": [{"role": "assistant", "content": _text(_clean(label, "label"))}],
    }


def format_rlaif_v(example: dict[str, Any]) -> dict[str, Any]:
    """RLAIF-V row -> conversational preference row (images, prompt, chosen, rejected), as HuggingFaceH4/rlaif-v_formatted."""
    chosen, rejected = _clean(example.get("chosen"), "chosen"), _clean(example.get("rejected"), "rejected")
    if chosen == rejected:
        raise ValueError("chosen == rejected")
    return {
        "images": [_image(example)],
        "prompt": [{"role": "user", "content": _image_then(_clean(example.get("question"), "question"))}],
        "chosen": [{"role": "assistant", "content": _text(chosen)}],
        "rejected": [{"role": "assistant", "content": _text(rejected)}],
    }


def format_product_description(example: dict[str, Any]) -> dict[str, Any]:
    """Amazon product row -> prompt(name, category, image)/completion(description)."""
    name, category = _clean(example.get("Product Name"), "Product Name"), _clean(example.get("Category"), "Category")
    return {
        "images": [_image(example)],
        "prompt": [{"role": "system", "content": _text(PRODUCT_SYSTEM)},
                   {"role": "user", "content": _image_then(f"Product: {name}\nCategory: {category}")}],
        "completion": [{"role": "assistant", "content": _text(_clean(example.get("description"), "description"))}],
    }


FORMATTERS = {"chartqa": format_chartqa, "rlaif_v": format_rlaif_v, "product": format_product_description}


def check_columns(dataset: Dataset, kind: str) -> None:
    """Raise KeyError naming every column `kind` needs that `dataset` lacks."""
    missing = [c for c in REQUIRED[kind] if c not in dataset.column_names]
    if missing:
        raise KeyError(f"{kind} data set is missing column(s) {missing}; it has {dataset.column_names}")


def find_bad_rows(dataset: Dataset, kind: str) -> list[tuple[int, str]]:
    """Return (index, reason) for every row the `kind` formatter cannot turn into a training example."""
    check_columns(dataset, kind)
    raw = dataset.cast_column("image", ImageFeature(decode=False)) if "image" in dataset.features else dataset
    bad = []
    for i, row in enumerate(raw):
        try:
            FORMATTERS[kind](row)
        except ValueError as err:
            bad.append((i, str(err)))
    return bad


def validate(dataset: Dataset, kind: str) -> tuple[Dataset, list[tuple[int, str]]]:
    """Drop the rows `find_bad_rows` reports; return the clean data set and the report."""
    bad = find_bad_rows(dataset, kind)
    drop = {i for i, _ in bad}
    return dataset.select([i for i in range(len(dataset)) if i not in drop]), bad


def format_dataset(dataset: Dataset, kind: str, **map_kwargs: Any) -> tuple[Dataset, list[tuple[int, str]]]:
    """Validate then map `dataset` to TRL's format, dropping the source columns; returns (formatted, bad rows)."""
    clean, bad = validate(dataset, kind)
    formatted = clean.map(FORMATTERS[kind], remove_columns=clean.column_names, **map_kwargs)
    return formatted, bad
