"""Row checks: text fields and images every row needs, and with the model's processor its control tokens in user text,
image sizes it refuses, long rows."""

from __future__ import annotations

import io
import os
from typing import Any, Iterable

from PIL import Image


def clean_text(value: Any, field: str) -> str:
    """Return `value` stripped; raise ValueError naming `field` when it is empty, not a string or holds a NUL byte."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"empty {field}")
    if not isinstance(value, str):
        raise ValueError(f"{field} is {type(value).__name__} {str(value)[:40]!r}, not text")
    nul = value.find("\x00")
    if nul >= 0:  # binary data or a bad decode read as text: the tokenizer would encode it and train on it silently
        raise ValueError(f"{field} contains a NUL byte (\\x00) at character {nul}")
    return value.strip()


def open_image(source: Any) -> Image.Image:
    """Decode an image from bytes or a file path; raises ValueError saying why it cannot."""
    if isinstance(source, str) and not os.path.exists(source):
        raise ValueError(f"missing image file {source!r}")
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except Exception as err:  # PIL raises many types for corrupt data
        raise ValueError(f"undecodable image ({type(err).__name__})") from None
    return image


def decode_image(value: Any) -> Image.Image:
    """A row's image from PIL, a file path, bytes or undecoded {bytes, path}; ValueError saying why it is unusable."""
    if isinstance(value, dict):  # undecoded {"bytes", "path"}: bytes from parquet, a path from local image files
        value = value.get("bytes") or value.get("path")
    if value is None or (isinstance(value, (str, bytes)) and not value):
        raise ValueError("missing image")
    if isinstance(value, (str, bytes)):
        value = open_image(value)
    if not isinstance(value, Image.Image):
        raise ValueError(f"image is {type(value).__name__}, not an image, file path or bytes")
    return value


def control_tokens(processor: Any) -> list[str]:
    """The tokenizer's special tokens (declared or added) and the processor's `*_token` strings, longest first."""
    tokenizer = getattr(processor, "tokenizer", processor)
    tokens = set(tokenizer.all_special_tokens)
    tokens |= {str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)}
    for owner in (processor, tokenizer):
        for name in dir(owner):
            if name.endswith("_token") and not name.startswith("_"):
                value = getattr(owner, name, None)
                tokens |= {value} if isinstance(value, str) else set()
    return sorted((t for t in tokens if t.strip()), key=len, reverse=True)


def texts(value: Any) -> Iterable[str]:
    """The text a row field puts in training: the field itself, or the first of a list (ChartQA's `label`)."""
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, str):
        yield first


# How far `RowCheck.estimate` may be from the exact count: tokenization differs at the edges of each image's tokens
# (Idefics2's processor inserts a space after its closing image token); rows estimated within it are counted exactly.
ESTIMATE_MARGIN = 16


class RowCheck:
    """Checks a raw row and its formatted form against one processor; raises ValueError with the reason."""

    def __init__(self, processor: Any, max_tokens: int | None = None) -> None:
        self.processor, self.max_tokens = processor, max_tokens
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokens = control_tokens(processor)
        self.image_cost: dict[tuple[int, int], int] = {}

    def __call__(self, row: dict[str, Any], fields: list[str], formatted: dict[str, Any]) -> None:
        """Raise ValueError for the first problem of `row` (its text `fields`) or of its `formatted` example."""
        for field in fields:
            for text in texts(row.get(field)):
                found = [t for t in self.tokens if t in text]
                if found:
                    raise ValueError(f"{field} contains the model's control token {found[0]!r}: the chat template "
                                     "would turn it into a real image slot or turn boundary")
        for image in formatted["images"]:
            self.image_tokens(image.size)  # the processor must accept every image size
        if self.max_tokens is not None and self.estimate(formatted) > self.max_tokens - ESTIMATE_MARGIN:
            try:  # near or over the bound: count exactly
                length = self.length(formatted)
            except Exception as err:  # the processor's own refusal of the whole row
                raise ValueError(f"the processor refuses the row: {type(err).__name__}: {err}") from None
            if length > self.max_tokens:
                raise ValueError(f"{length} tokens (text + image) exceed the bound of {self.max_tokens}")

    def image_tokens(self, size: tuple[int, int]) -> int:
        """Tokens an image of `size` takes, asked of the processor (cached); ValueError when it refuses the size."""
        if size not in self.image_cost:
            placeholder = getattr(self.processor, "image_token", None) or "<image>"
            try:
                ids = self.processor(text=[placeholder], images=[Image.new("RGB", size)])["input_ids"][0]
            except Exception as err:  # the processor's own refusal, whatever its type
                raise ValueError(f"image {size[0]}x{size[1]} refused by the processor: {err}") from None
            self.image_cost[size] = len(ids) - len(self.tokenizer(placeholder)["input_ids"]) + 1
        return self.image_cost[size]

    def estimate(self, formatted: dict[str, Any]) -> int:
        """`length` within a few tokens, without processing images: rendered text tokens plus each image's tokens."""
        answers = [formatted[k] for k in ("completion", "chosen", "rejected") if k in formatted]
        render = self.processor.apply_chat_template
        text = max(len(self.tokenizer(render(formatted["prompt"] + a, tokenize=False))["input_ids"]) for a in answers)
        return text + sum(self.image_tokens(image.size) - 1 for image in formatted["images"])

    def length(self, formatted: dict[str, Any]) -> int:
        """Tokens of the longest conversation (prompt + each answer) exactly as the processor builds it."""
        answers = [formatted[k] for k in ("completion", "chosen", "rejected") if k in formatted]
        return max(len(self.processor(text=[self.processor.apply_chat_template(formatted["prompt"] + answer,
                                                                              tokenize=False)],
                                      images=formatted["images"])["input_ids"][0]) for answer in answers)
