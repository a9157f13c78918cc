"""AMBER's discriminative (yes/no) hallucination queries: download, load as conversational prompts, score per type.

Facts from the official repository (github.com/junyangwang0410/AMBER, README and inference.py): the discriminative
queries are ids 1005-15220 (14,216) in `data/query/query_discriminative.json`; `data/annotations.json` is a list
indexed by id - 1 whose `type` is `discriminative-hallucination` (existence), `discriminative-attribute-state`,
`-number` or `-action` (attribute), `discriminative-relation` or `relation` (relation); the 1,004 images
`AMBER_<n>.jpg` come as one zip from the Google Drive link in its README.
"""

from __future__ import annotations

import json
import re
import urllib.request
import zipfile
from pathlib import Path

from datasets import Dataset
from datasets import Image as ImageFeature

from helpers.metrics import yes_no_metrics

YES_NO_INSTRUCTION = "Answer yes or no."
AMBER_COMMIT = "5e1fd52f8ea69150c70f0ba15de70af3a907a1fd"  # the commit that published AMBER's data files
AMBER_RAW = f"https://raw.githubusercontent.com/junyangwang0410/AMBER/{AMBER_COMMIT}/data"
AMBER_FILES = {"query_discriminative.json": "query/query_discriminative.json", "annotations.json": "annotations.json"}
AMBER_IMAGES_DRIVE_ID = "1MaCHgtupcZUjf007anNl4_MV0o4DjXvl"  # the image zip linked from AMBER's README
AMBER_DISCRIMINATIVE_QUERIES = 14_216
DIMENSIONS = {  # AMBER's annotation type -> the dimension its inference.py reports it under
    "discriminative-hallucination": "existence",
    "discriminative-attribute-state": "attribute",
    "discriminative-attribute-number": "attribute",
    "discriminative-attribute-action": "attribute",
    "discriminative-relation": "relation",
    "relation": "relation",
}
_IMAGE_NAME = re.compile(r"AMBER_\d+\.(jpg|png)")


def fetch_amber(root: str | Path, images_zip: str | Path, base_url: str = AMBER_RAW) -> Path:
    """Download the query and annotation files (pinned commit) into `root` and unpack the zip's images into
    `root/images/`, whatever folders the zip nests them in: the layout `load_amber` reads."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, remote in AMBER_FILES.items():
        if not (root / name).is_file():
            urllib.request.urlretrieve(f"{base_url}/{remote}", root / name)
    with zipfile.ZipFile(images_zip) as archive:
        for member in archive.namelist():
            name = member.rsplit("/", 1)[-1]
            if _IMAGE_NAME.fullmatch(name) and not (root / "images" / name).is_file():
                (root / "images" / name).write_bytes(archive.read(member))  # the bare name: nothing lands elsewhere
    return root


def _image_path(root: Path, name: str) -> str:
    """`root/images/name`, refusing a name that leaves the images folder (`../x`, an absolute path)."""
    images = (root / "images").resolve()
    path = (images / name).resolve()
    if path.parent != images:
        raise ValueError(f"image name {name!r} escapes {images}")
    return str(path)


def _read_json(path: Path) -> list[dict]:
    """One of AMBER's JSON lists; FileNotFoundError or ValueError naming the file and how to fetch it again."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: fetch AMBER with fetch_amber(root, images_zip)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): delete it and run fetch_amber(root, images_zip) "
                         "again") from None


def _annotation(truths: dict[int, dict], query: dict, root: Path) -> dict:
    """The annotation of `query`; ValueError naming the query id when it has none or a type AMBER does not have."""
    found = truths.get(query["id"])
    if found is None:
        raise ValueError(f"AMBER query {query['id']} has no entry in {root / 'annotations.json'}: the query and "
                         "annotation files do not match; delete both and run fetch_amber(root, images_zip) again")
    if found.get("type") not in DIMENSIONS:
        raise ValueError(f"AMBER query {query['id']} has type {found.get('type')!r} in {root / 'annotations.json'}, "
                         f"not one of AMBER's discriminative types {sorted(DIMENSIONS)}")
    return found


def load_amber(root: str | Path, limit: int | None = None,
               per_dimension: int | None = None) -> Dataset:
    """AMBER's `query_discriminative.json` joined with `annotations.json` (truth, type, dimension); images from
    `root/images/`. `per_dimension` keeps the first N queries of existence, attribute and relation each (a subset
    that still has every per-type score); `limit` keeps the first N overall. A kept query without an annotation or
    whose image file is missing raises an error naming the query, the file and how to fetch it again."""
    root = Path(root)
    queries = _read_json(root / "query_discriminative.json")
    truths = {a["id"]: a for a in _read_json(root / "annotations.json")}
    if per_dimension is not None:
        seen: dict[str, int] = {}
        kept = []
        for q in queries:
            dim = DIMENSIONS[_annotation(truths, q, root)["type"]]
            seen[dim] = seen.get(dim, 0) + 1
            if seen[dim] <= per_dimension:
                kept.append(q)
        queries = kept
    queries = queries[:limit]
    notes = [_annotation(truths, q, root) for q in queries]
    images = [_image_path(root, q["image"]) for q in queries]
    missing = [(q, path) for q, path in zip(queries, images) if not Path(path).is_file()]
    if missing:
        (q, path), more = missing[0], f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"the image of AMBER query {q['id']}, {path}, is missing{more}: the image zip was not "
                                "fully unpacked; run fetch_amber(root, images_zip) again, which adds missing images")
    rows = {
        "id": [q["id"] for q in queries],
        "image": images,
        "query": [q["query"] for q in queries],
        "truth": [a["truth"] for a in notes],
        "type": [a["type"] for a in notes],
        "dimension": [DIMENSIONS[a["type"]] for a in notes],
    }
    return Dataset.from_dict(rows).cast_column("image", ImageFeature())


def amber_scores(predictions: list[str], truths: list[str], types: list[str]) -> dict[str, dict[str, float]]:
    """AMBER's discriminative report: accuracy, precision, recall and F1 ("no" positive) overall and per dimension
    (existence, attribute, relation) as its inference.py groups the types; a dimension absent from `types` is left
    out. Unlike inference.py, answers are normalised ("No." counts as "No") and F1 has no epsilon in its denominator."""
    if not len(predictions) == len(truths) == len(types):
        raise ValueError(f"{len(predictions)} predictions, {len(truths)} truths, {len(types)} types")
    dims = [DIMENSIONS[t] for t in types]  # KeyError on a type AMBER does not have
    scores = {"overall": yes_no_metrics(predictions, truths)}
    for dim in ("existence", "attribute", "relation"):
        rows = [i for i, d in enumerate(dims) if d == dim]
        if rows:
            scores[dim] = yes_no_metrics([predictions[i] for i in rows], [truths[i] for i in rows])
    return scores


def yes_no_prompt(query: str) -> list[dict]:
    """A one-image user turn asking `query` with the yes/no instruction, in TRL's conversational form."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"{query} {YES_NO_INSTRUCTION}"}]}]
