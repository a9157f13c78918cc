"""AMBER loader, yes/no prompts, and the tiny run folders notebooks hand to each other."""

from __future__ import annotations

import json
import zipfile

import pytest

from helpers.amber import (DIMENSIONS, YES_NO_INSTRUCTION, amber_scores, fetch_amber, load_amber,
                           yes_no_prompt)
from helpers.metrics import yes_no_metrics
from tinyenv.hub import AMBER_SAMPLE


def test_sample_joins_queries_with_truths():
    amber = load_amber(AMBER_SAMPLE)
    assert len(amber) == 70 and set(amber["truth"]) == {"yes", "no"}
    assert amber[0]["id"] == 1005 and amber[0]["image"].size[0] > 0
    assert len(load_amber(AMBER_SAMPLE, limit=5)) == 5


def test_sample_types_are_ambers_own():
    types = {a["type"] for a in json.loads((AMBER_SAMPLE / "annotations.json").read_text())}
    assert types <= set(DIMENSIONS) and {"discriminative-hallucination", "discriminative-relation", "relation"} <= types
    amber = load_amber(AMBER_SAMPLE)
    assert set(amber["dimension"]) == {"existence", "attribute", "relation"}
    # AMBER labels its relation queries whose truth is "no" `relation`, the others `discriminative-relation`
    assert all((t == "relation") == (truth == "no") for t, truth in zip(amber["type"], amber["truth"])
               if DIMENSIONS[t] == "relation")


def test_per_dimension_subset_keeps_every_dimension():
    sub = load_amber(AMBER_SAMPLE, per_dimension=3)
    assert len(sub) == 9 and sorted(sub["dimension"]) == ["attribute"] * 3 + ["existence"] * 3 + ["relation"] * 3


def _amber_copy(tmp_path, image_name):
    """A one-query AMBER folder whose query names `image_name`."""
    (tmp_path / "images").mkdir()
    (tmp_path / "query_discriminative.json").write_text(json.dumps([{"id": 1005, "image": image_name, "query": "?"}]))
    (tmp_path / "annotations.json").write_text(json.dumps([{"id": 1005, "type": "relation", "truth": "no"}]))
    return tmp_path


@pytest.mark.parametrize("name", ["../query_discriminative.json", "../../etc/passwd", "/etc/passwd", "sub/../../x.png"])
def test_load_amber_refuses_an_image_outside_its_folder(tmp_path, name):
    with pytest.raises(ValueError, match="escapes"):
        load_amber(_amber_copy(tmp_path, name))


def test_load_amber_negative_control_a_plain_name_loads(tmp_path):
    root = _amber_copy(tmp_path, "AMBER_1.png")
    (root / "images" / "AMBER_1.png").write_bytes((AMBER_SAMPLE / "images" / "AMBER_1.png").read_bytes())
    assert load_amber(root)[0]["image"].size[0] > 0


def test_amber_scores_per_dimension_as_ambers_inference():
    preds = ["No", "yes", "No.", "Yes", "no", "Yes"]
    truths = ["no", "yes", "yes", "no", "no", "yes"]
    types = ["discriminative-hallucination", "discriminative-hallucination", "discriminative-attribute-state",
             "discriminative-attribute-number", "relation", "discriminative-relation"]
    scores = amber_scores(preds, truths, types)
    assert list(scores) == ["overall", "existence", "attribute", "relation"]
    assert scores["overall"] == yes_no_metrics(preds, truths)
    assert scores["existence"]["accuracy"] == 1.0 and scores["attribute"]["accuracy"] == 0.0
    assert scores["relation"] == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    with pytest.raises(KeyError):
        amber_scores(["no"], ["no"], ["discriminative-existence"])  # not a type AMBER has


def test_fetch_amber_lays_out_what_load_amber_reads(tmp_path):
    remote = tmp_path / "remote"
    (remote / "query").mkdir(parents=True)
    (remote / "query" / "query_discriminative.json").write_text((AMBER_SAMPLE / "query_discriminative.json").read_text())
    (remote / "annotations.json").write_text((AMBER_SAMPLE / "annotations.json").read_text())
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for image in sorted((AMBER_SAMPLE / "images").iterdir()):
            z.write(image, f"AMBER/image/{image.name}")  # nested, as a zip of a folder is
        z.writestr("../../outside/AMBER_99.png", b"x")  # a hostile path: only its bare name is used
        z.writestr("__MACOSX/notes.txt", b"x")
    root = fetch_amber(tmp_path / "AMBER", archive, base_url=remote.as_uri())
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(
        [p.name for p in (AMBER_SAMPLE / "images").iterdir()] + ["AMBER_99.png"])
    assert not (tmp_path / "outside").exists()
    assert len(load_amber(root)) == len(load_amber(AMBER_SAMPLE))


def test_yes_no_prompt_is_one_image_user_turn():
    (turn,) = yes_no_prompt("Is there a cat in this image?")
    assert turn["role"] == "user" and turn["content"][0] == {"type": "image"}
    assert turn["content"][1]["text"] == f"Is there a cat in this image? {YES_NO_INSTRUCTION}"


def test_a_query_without_an_annotation_names_the_query_the_file_and_the_fix(tmp_path):
    root = _amber_copy(tmp_path, "AMBER_1.png")
    (root / "images" / "AMBER_1.png").write_bytes((AMBER_SAMPLE / "images" / "AMBER_1.png").read_bytes())
    (root / "annotations.json").write_text(json.dumps([{"id": 1006, "type": "relation", "truth": "no"}]))
    for kwargs in ({}, {"per_dimension": 1}):
        with pytest.raises(ValueError, match=r"AMBER query 1005 has no entry in .*annotations\.json.*run fetch_amber"):
            load_amber(root, **kwargs)
    (root / "annotations.json").write_text(json.dumps([{"id": 1005, "type": "discriminative-existence",
                                                         "truth": "no"}]))
    with pytest.raises(ValueError, match="AMBER query 1005 has type 'discriminative-existence'"):
        load_amber(root)


def test_a_missing_image_names_the_query_the_file_and_the_fix(tmp_path):
    root = _amber_copy(tmp_path, "AMBER_1.png")  # the image was never unpacked
    with pytest.raises(FileNotFoundError, match=r"image of AMBER query 1005, .*images/AMBER_1\.png, is missing: .*"
                                                r"run fetch_amber\(root, images_zip\) again"):
        load_amber(root)


def test_missing_or_broken_amber_files_name_the_file(tmp_path):
    root = _amber_copy(tmp_path, "AMBER_1.png")
    (root / "annotations.json").write_text('[{"id": 1005, "ty')  # a download cut short
    with pytest.raises(ValueError, match=r"annotations\.json is not valid JSON .*delete it and run fetch_amber"):
        load_amber(root)
    (root / "annotations.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotations\.json is missing: fetch AMBER with fetch_amber"):
        load_amber(root)

