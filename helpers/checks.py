"""Row checks that need the model's processor: its control tokens in user text, image sizes it refuses, long rows."""

from __future__ import annotations

from typing import Any, Iterable

from PIL import Image


def control_tokens(processor: Any) -> list[str]:
    """Every special token of the processor's tokenizer (declared or added as special) and its image/video token
    strings, longest first."""
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
    """The strings in a row field: the field itself, or the strings of a list field (ChartQA's `label`)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from (v for v in value if isinstance(v, str))


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
        image_tokens = sum(self.image_tokens(image.size) for image in formatted["images"])
        if self.max_tokens is not None:
            length = self.text_tokens(formatted) + image_tokens
            if length > self.max_tokens:
                raise ValueError(f"{length} tokens (text + image) exceed the bound of {self.max_tokens}")

    def image_tokens(self, size: tuple[int, int]) -> int:
        """Tokens one image of `size` (width, height) adds to a sequence, asked of the processor itself (cached per
        size); ValueError when the processor refuses the size."""
        if size not in self.image_cost:
            placeholder = getattr(self.processor, "image_token", None) or "<image>"
            try:
                ids = self.processor(text=[placeholder], images=[Image.new("RGB", size)])["input_ids"][0]
            except Exception as err:  # the processor's own refusal, whatever its type
                raise ValueError(f"image {size[0]}x{size[1]} refused by the processor: {err}") from None
            self.image_cost[size] = len(ids) - len(self.tokenizer(placeholder)["input_ids"])
        return self.image_cost[size]

    def text_tokens(self, formatted: dict[str, Any]) -> int:
        """Tokens of the longest rendered conversation (prompt + completion, or prompt + chosen/rejected)."""
        answers = [formatted[k] for k in ("completion", "chosen", "rejected") if k in formatted]
        render = self.processor.apply_chat_template
        return max(len(self.tokenizer(render(formatted["prompt"] + a, tokenize=False))["input_ids"]) for a in answers)
