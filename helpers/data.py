"""Format ChartQA, RLAIF-V and Amazon product rows into TRL's conversational formats, and validate them first.

The formatters are the notebooks' own (notebooks 03 and 04 define them, a test holds the copies equal): a row in, TRL's
messages out. What a row must hold for them, and the image repair, is `prepare_row`'s job, run by `validate` first.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, List, Value
from datasets import Image as ImageFeature
from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from PIL import Image

from helpers.checks import RowCheck, clean_text, decode_image
from helpers.vision import prepare_image

CHARTQA_SYSTEM = ("You are a chart analyst. Answer with a single number, word or short phrase read from the chart, "
                  "with no explanation.")
PRODUCT_SYSTEM = "You are a copywriter. Write a short, factual product description from the photo and details."

REQUIRED = {
    "chartqa": ["image", "query", "label"],
    "rlaif_v": ["image", "question", "chosen", "rejected"],
    "product": ["image", "Product Name", "Category", "description"],
}


def format_chartqa(example: dict) -> dict:
    """ChartQA row -> prompt/completion: [system, user(image, query)] -> [assistant(first gold answer)]."""
    return {
        "images": [example["image"]],
        "prompt": [{"role": "system", "content": [{"type": "text", "text": CHARTQA_SYSTEM}]},
                   {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": example["query"].strip()}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": example["label"][0].strip()}]}],
    }


def format_rlaif_v(example: dict) -> dict:
    """RLAIF-V row -> conversational preference row (images, prompt, chosen, rejected), as HuggingFaceH4/rlaif-v_formatted."""
    question = example["question"].strip()
    return {
        "images": [example["image"]],
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
        "chosen": [{"role": "assistant", "content": [{"type": "text", "text": example["chosen"].strip()}]}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": example["rejected"].strip()}]}],
    }


def format_product_description(example: dict) -> dict:
    """Amazon product row -> prompt(system, user(image, name, category))/completion(description)."""
    details = f"Product: {example['Product Name'].strip()}\nCategory: {example['Category'].strip()}"
    return {
        "images": [example["image"]],
        "prompt": [{"role": "system", "content": [{"type": "text", "text": PRODUCT_SYSTEM}]},
                   {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": details}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": example["description"].strip()}]}],
    }


FORMATTERS = {"chartqa": format_chartqa, "rlaif_v": format_rlaif_v, "product": format_product_description}


def _prepare(kind: str, example: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(`prepare_row`'s row, whether its image was repaired)."""
    decoded = decode_image(example.get("image"))
    image = prepare_image(decoded)
    for field in REQUIRED[kind][1:]:
        value = example.get(field)
        if field == "label":  # ChartQA: a list of gold answers, the first one trained
            if value is not None and not isinstance(value, list):
                raise ValueError(f"label is {type(value).__name__} {str(value)[:40]!r}, not a list of answers")
            value = value[0] if value else None
        clean_text(value, field)
    if kind == "rlaif_v" and _same_answer(example["chosen"], example["rejected"]):
        raise ValueError("chosen == rejected" if example["chosen"].strip() == example["rejected"].strip() else
                         "chosen and rejected differ only in case or whitespace: no preference to learn")
    return {**example, "image": image}, image is not decoded


def _same_answer(a: str, b: str) -> bool:
    """Whether two answers are the same text up to case and whitespace (a preference pair with no signal)."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def prepare_row(kind: str, example: dict[str, Any]) -> dict[str, Any]:
    """The row its formatter can take: image decoded and repaired to bounded RGB, every text field non-empty text;
    ValueError with the reason otherwise."""
    return _prepare(kind, example)[0]


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


def verdict(kind: str, row: dict[str, Any], check: RowCheck | None = None) -> tuple[str | None, bool]:
    """(why `row` is unusable, or None; whether `prepare_row` repairs its image): one row of `scan`."""
    try:
        prepared, changed = _prepare(kind, row)
        if check is not None:
            check(row, REQUIRED[kind][1:], FORMATTERS[kind](prepared))
    except ValueError as err:
        return str(err), False
    return None, changed


def _verdicts(batch: dict[str, list], kind: str, check: RowCheck | None) -> dict[str, list]:
    """`verdict` of each row of a batch, as the columns `reason` and `repaired` (Dataset.map's worker)."""
    rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
    reasons, repaired = zip(*(verdict(kind, row, check) for row in rows)) if rows else ((), ())
    return {"reason": list(reasons), "repaired": list(repaired)}


def scan(dataset: Dataset, kind: str, processor: Any = None, max_tokens: int | None = None,
         num_proc: int | None = None) -> tuple[list[tuple[int, str]], set[int]]:
    """(`find_bad_rows`' report, the indices of the usable rows whose image `prepare_row` repairs). With `num_proc`
    > 1 the rows are checked in that many processes (Dataset.map); only the verdicts are written, not the rows."""
    check_columns(dataset, kind)
    check = RowCheck(processor, max_tokens) if processor is not None else None
    image = dataset.features["image"]
    raw = dataset.cast_column("image", ImageFeature(decode=False)) if isinstance(image, ImageFeature) else dataset
    if num_proc is not None and num_proc > 1 and len(raw) > 1:
        verdicts = raw.map(_verdicts, batched=True, batch_size=100, num_proc=min(num_proc, len(raw)),
                           remove_columns=raw.column_names, fn_kwargs={"kind": kind, "check": check},
                           new_fingerprint=uuid.uuid4().hex,  # never cached: the processor may differ
                           load_from_cache_file=False, desc="Validating rows")
        pairs = zip(verdicts["reason"], verdicts["repaired"])
    else:
        pairs = (verdict(kind, row, check) for row in raw)
    bad, repaired = [], set()
    for i, (reason, changed) in enumerate(pairs):
        if reason is not None:
            bad.append((i, reason))
        elif changed:
            repaired.add(i)
    return bad, repaired


def find_bad_rows(dataset: Dataset, kind: str, processor: Any = None, max_tokens: int | None = None,
                  num_proc: int | None = None) -> list[tuple[int, str]]:
    """(index, reason) of each unusable row; with `processor` also control tokens, refused images, > `max_tokens`."""
    return scan(dataset, kind, processor, max_tokens, num_proc)[0]


def _png(image: Image.Image) -> dict[str, Any]:
    """An image as the undecoded {bytes, path} a datasets Image column stores."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def validate(dataset: Dataset, kind: str, processor: Any = None, max_tokens: int | None = None,
             num_proc: int | None = None) -> tuple[Dataset, list[tuple[int, str]]]:
    """Drop the rows `find_bad_rows` reports and repair the kept images to bounded RGB (an Image column); return the
    clean data set, ready for its formatter, and the report. `num_proc`: processes for the checks and the repair."""
    bad, repaired = scan(dataset, kind, processor, max_tokens, num_proc)
    drop = {i for i, _ in bad}
    kept = [i for i in range(len(dataset)) if i not in drop]
    clean = dataset.select(kept)
    if repaired:  # only the repaired images are decoded and written again; the others are copied as stored bytes
        fix = {new for new, i in enumerate(kept) if i in repaired}
        shown = not are_progress_bars_disabled()
        disable_progress_bars()  # a byte copy of most rows: the formatter's map that follows shows the progress
        try:
            clean = clean.cast_column("image", ImageFeature(decode=False)).map(
                lambda row, i: {"image": _png(prepare_image(decode_image(row["image"]))) if i in fix else row["image"]},
                with_indices=True, num_proc=num_proc if num_proc is not None and num_proc > 1 else None)
        finally:
            if shown:
                enable_progress_bars()
    feature = clean.features["image"]
    if len(clean) and not (isinstance(feature, ImageFeature) and feature.decode):
        clean = clean.cast_column("image", ImageFeature())  # paths, bytes or {bytes, path}: decoded on access
    return clean, bad


def format_validated(clean: Dataset, kind: str, keep: tuple[str, ...] = (), **map_kwargs: Any) -> Dataset:
    """Map `validate`'s clean rows to TRL's format, keeping the source columns in `keep`. The formatter moves each
    image's stored bytes into `images` as they are: nothing is decoded, and nothing re-encoded (a plain `map` over
    decoded images saves every image again: PNG charts cost an encode each, JPEG photos lose quality)."""
    drop = [c for c in clean.column_names if c not in keep]
    stored = clean.cast_column("image", ImageFeature(decode=False)) if len(clean) else clean
    formatted = stored.map(FORMATTERS[kind], remove_columns=drop, **map_kwargs)
    return formatted.cast_column("images", List(ImageFeature())) if len(clean) else formatted


def format_dataset(dataset: Dataset, kind: str, processor: Any = None, max_tokens: int | None = None,
                   keep: tuple[str, ...] = (), **map_kwargs: Any) -> tuple[Dataset, list[tuple[int, str]]]:
    """Validate (with `processor`: tokens, images, lengths too), map to TRL's format, keeping the source columns in
    `keep` (GRPO's rewards read ChartQA's gold `label`); return (formatted, bad rows). `num_proc` among `map_kwargs`
    spreads the validation and the map over that many processes."""
    clean, bad = validate(dataset, kind, processor, max_tokens, num_proc=map_kwargs.get("num_proc"))
    return format_validated(clean, kind, keep, **map_kwargs), bad


def describe_bad_rows(bad: list[tuple[int, str]], total: int, first: int = 5) -> str:
    """One line: how many of `total` rows were dropped, and the first `first` of them with index and reason."""
    if not bad:
        return f"kept all {total} rows"
    shown = "; ".join(f"row {i}: {reason}" for i, reason in bad[:first])
    more = f"; and {len(bad) - first} more" if len(bad) > first else ""
    return f"dropped {len(bad)} of {total} rows: {shown}{more}"
