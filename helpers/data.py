"""Format ChartQA, RLAIF-V and Amazon product rows into TRL's conversational formats, and validate them first."""

from __future__ import annotations

import io
import os
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, Value
from datasets import Image as ImageFeature
from PIL import Image

from helpers.checks import RowCheck
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
    """Return `value` stripped; raise ValueError naming `field` when it is empty or not a string (and saying which)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"empty {field}")
    if not isinstance(value, str):
        raise ValueError(f"{field} is {type(value).__name__} {str(value)[:40]!r}, not text")
    return value.strip()


def _open(source: Any) -> Image.Image:
    """Decode an image from bytes or a file path; raises ValueError saying why it cannot."""
    if isinstance(source, str) and not os.path.exists(source):
        raise ValueError(f"missing image file {source!r}")
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except Exception as err:  # PIL raises many types for corrupt data
        raise ValueError(f"undecodable image ({type(err).__name__})") from None
    return image


def _image(example: dict[str, Any]) -> Image.Image:
    """The row's image (PIL, file path, bytes or undecoded {bytes, path}) as bounded RGB; ValueError when unusable."""
    image = example.get("image")
    if isinstance(image, dict):  # undecoded {"bytes", "path"}: bytes from parquet, a path from local image files
        image = image.get("bytes") or image.get("path")
    if image is None or (isinstance(image, (str, bytes)) and not image):
        raise ValueError("missing image")
    if isinstance(image, (str, bytes)):
        image = _open(image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"image is {type(image).__name__}, not an image, file path or bytes")
    return prepare_image(image)


def format_chartqa(example: dict[str, Any]) -> dict[str, Any]:
    """ChartQA row -> prompt/completion: [system, user(image, query)] -> [assistant(label[0])]."""
    labels = example.get("label")
    label = (labels[0] if labels else None) if isinstance(labels, list) else labels
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
    """Raise one clear error when `dataset` is not one split, `kind` is unknown, or a column is missing or unusable."""
    if kind not in FORMATTERS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {sorted(FORMATTERS)}")
    if isinstance(dataset, DatasetDict):
        raise TypeError(f"expected one split, got a DatasetDict with splits {list(dataset)}: pass e.g. "
                        "dataset['train']")
    if isinstance(dataset, IterableDataset):
        raise TypeError("expected a map-style Dataset, got an IterableDataset (streaming=True): validation needs row "
                        "indices; load without streaming, or Dataset.from_generator over the rows you want")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    missing = [c for c in REQUIRED[kind] if c not in dataset.column_names]
    if missing:
        raise KeyError(f"{kind} data set is missing column(s) {missing}; it has {dataset.column_names}")
    feature = dataset.features["image"]
    usable = (isinstance(feature, ImageFeature) or (isinstance(feature, dict) and set(feature) <= {"bytes", "path"})
              or (isinstance(feature, Value) and feature.dtype in IMAGE_VALUE_TYPES))
    if not usable:
        raise TypeError(f"column 'image' holds {feature}: expected images, file paths, bytes or {{bytes, path}}")


IMAGE_VALUE_TYPES = {"string", "large_string", "binary", "large_binary", "null"}


def find_bad_rows(dataset: Dataset, kind: str, processor: Any = None,
                  max_tokens: int | None = None) -> list[tuple[int, str]]:
    """(index, reason) of each unusable row; with `processor` also control tokens, refused images, > `max_tokens`."""
    check_columns(dataset, kind)
    check = RowCheck(processor, max_tokens) if processor is not None else None
    image = dataset.features["image"]
    raw = dataset.cast_column("image", ImageFeature(decode=False)) if isinstance(image, ImageFeature) else dataset
    bad = []
    for i, row in enumerate(raw):
        try:
            formatted = FORMATTERS[kind](row)
            if check is not None:
                check(row, REQUIRED[kind][1:], formatted)
        except ValueError as err:
            bad.append((i, str(err)))
    return bad


def validate(dataset: Dataset, kind: str, processor: Any = None,
             max_tokens: int | None = None) -> tuple[Dataset, list[tuple[int, str]]]:
    """Drop the rows `find_bad_rows` reports; return the clean data set and the report."""
    bad = find_bad_rows(dataset, kind, processor, max_tokens)
    drop = {i for i, _ in bad}
    return dataset.select([i for i in range(len(dataset)) if i not in drop]), bad


def format_dataset(dataset: Dataset, kind: str, processor: Any = None, max_tokens: int | None = None,
                   keep: tuple[str, ...] = (), **map_kwargs: Any) -> tuple[Dataset, list[tuple[int, str]]]:
    """Validate (with `processor`: tokens, images, lengths too), map to TRL's format, keeping the source columns in
    `keep` (GRPO's rewards read ChartQA's gold `label`); return (formatted, bad rows)."""
    clean, bad = validate(dataset, kind, processor, max_tokens)
    drop = [c for c in clean.column_names if c not in keep]
    formatted = clean.map(FORMATTERS[kind], remove_columns=drop, **map_kwargs)
    return formatted, bad


def describe_bad_rows(bad: list[tuple[int, str]], total: int, first: int = 5) -> str:
    """One line: how many of `total` rows were dropped, and the first `first` of them with index and reason."""
    if not bad:
        return f"kept all {total} rows"
    shown = "; ".join(f"row {i}: {reason}" for i, reason in bad[:first])
    more = f"; and {len(bad) - first} more" if len(bad) > first else ""
    return f"dropped {len(bad)} of {total} rows: {shown}{more}"
