"""AMBER's discriminative (yes/no) hallucination queries as a dataset of conversational prompts."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset
from datasets import Image as ImageFeature

from helpers.tiny import DATA_DIR

YES_NO_INSTRUCTION = "Answer yes or no."
SAMPLE_DIR = DATA_DIR / "amber"  # the AMBER-style sample shipped with the cookbook (see data_samples/README.md)


def load_amber(root: str | Path = SAMPLE_DIR, limit: int | None = None) -> Dataset:
    """AMBER's `query_discriminative.json` joined with `annotations.json` truths; images from `root/images/`."""
    root = Path(root)
    queries = json.loads((root / "query_discriminative.json").read_text())[:limit]
    truths = {a["id"]: a for a in json.loads((root / "annotations.json").read_text())}
    rows = {
        "id": [q["id"] for q in queries],
        "image": [str(root / "images" / q["image"]) for q in queries],
        "query": [q["query"] for q in queries],
        "truth": [truths[q["id"]]["truth"] for q in queries],
        "type": [truths[q["id"]]["type"] for q in queries],
    }
    return Dataset.from_dict(rows).cast_column("image", ImageFeature())


def yes_no_prompt(query: str) -> list[dict]:
    """A one-image user turn asking `query` with the yes/no instruction, in TRL's conversational form."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"{query} {YES_NO_INSTRUCTION}"}]}]
