"""Formatters produce TRL's formats; bad rows are reported by index and reason, never passed on silently."""

from __future__ import annotations

import io

import pytest
from datasets import Dataset, Features, Image, List, Value, load_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from transformers import AutoProcessor
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from tinyenv import hub as tiny
from helpers.data import (CHARTQA_SYSTEM, check_columns, find_bad_rows, format_chartqa, format_dataset,
                          format_product_description, format_rlaif_v, prepare_row, validate)


def _png(size=(64, 48), mode="RGB") -> bytes:
    buf = io.BytesIO()
    PILImage.new(mode, size, 128 if mode in ("L", "P", "1") else None).save(buf, format="PNG")
    return buf.getvalue()


def _chartqa_rows():
    good = {"bytes": _png(), "path": None}
    rows = [
        (good, "What is the value for 2019?", ["42"]),
        (None, "What is the value?", ["1"]),                          # 1: missing image
        ({"bytes": b"not a png", "path": None}, "Q?", ["1"]),         # 2: undecodable
        (good, "   ", ["1"]),                                         # 3: empty question
        (good, "Q?", []),                                             # 4: no label
        (good, "Q?", [""]),                                           # 5: empty label
        ({"bytes": _png((3000, 10)), "path": None}, "Q?", ["1"]),     # 6: too elongated for the processors
        ({"bytes": _png(mode="LA"), "path": None}, "Grey?", ["Yes"]),  # repairable: mode conversion
    ]
    features = Features({"image": Image(), "query": Value("string"), "label": List(Value("string"))})
    return Dataset.from_dict({"image": [r[0] for r in rows], "query": [r[1] for r in rows],
                              "label": [r[2] for r in rows]}, features=features)


def test_bad_chartqa_rows_are_reported_by_index_and_reason():
    bad = find_bad_rows(_chartqa_rows(), "chartqa")
    assert [i for i, _ in bad] == [1, 2, 3, 4, 5, 6]
    reasons = dict(bad)
    assert reasons[1] == "missing image" and reasons[2].startswith("undecodable image")
    assert reasons[3] == "empty query" and reasons[4] == reasons[5] == "empty label"
    assert "unusable image size" in reasons[6]


def test_format_dataset_drops_bad_rows_and_repairs_modes():
    formatted, bad = format_dataset(_chartqa_rows(), "chartqa")
    assert len(formatted) == 2 and len(bad) == 6
    assert all(img.mode == "RGB" for row in formatted["images"] for img in row)
    assert formatted.column_names == ["images", "prompt", "completion"]


def test_missing_column_raises_naming_it():
    ds = Dataset.from_dict({"image": [None], "question": ["q"]})
    with pytest.raises(KeyError, match=r"\['query', 'label'\]"):
        check_columns(ds, "chartqa")


def test_rlaif_v_rejects_identical_or_empty_answers():
    img = PILImage.new("RGB", (32, 32))
    row = {"image": img, "question": "Describe.", "chosen": "A red ball.", "rejected": "A red ball."}
    with pytest.raises(ValueError, match="chosen == rejected"):
        prepare_row("rlaif_v", row)
    with pytest.raises(ValueError, match="chosen == rejected"):
        prepare_row("rlaif_v", {**row, "rejected": " A red ball. "})  # the formatter strips: the same answer
    with pytest.raises(ValueError, match="empty rejected"):
        prepare_row("rlaif_v", {**row, "rejected": ""})


def test_chartqa_row_is_prompt_completion_with_the_first_label():
    row = format_chartqa(prepare_row("chartqa", {"image": PILImage.new("P", (80, 60)), "query": " What is it? ",
                                                 "label": ["7", "seven"]}))
    assert row["prompt"][0] == {"role": "system", "content": [{"type": "text", "text": CHARTQA_SYSTEM}]}
    assert row["prompt"][1]["content"] == [{"type": "image"}, {"type": "text", "text": "What is it?"}]
    assert row["completion"] == [{"role": "assistant", "content": [{"type": "text", "text": "7"}]}]
    assert row["images"][0].mode == "RGB"


def test_product_prompt_carries_name_category_and_image():
    row = format_product_description(prepare_row("product", {"image": PILImage.new("RGB", (50, 50)),
                                                             "Product Name": "Red Mug ", "Category": "Kitchen",
                                                             "description": "A mug."}))
    assert row["prompt"][1]["content"][1]["text"] == "Product: Red Mug\nCategory: Kitchen"
    assert row["completion"][0]["content"][0]["text"] == "A mug."


odd_text = st.one_of(st.none(), st.integers(), st.text(max_size=40))
odd_image = st.one_of(
    st.none(), st.binary(max_size=64).map(lambda b: {"bytes": b, "path": None}),
    st.tuples(st.integers(1, 400), st.integers(1, 400),
              st.sampled_from(["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "RGB"])).map(
        lambda t: PILImage.new(t[2], (t[0], t[1]))))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=odd_image, a=odd_text, b=odd_text, c=odd_text)
def test_prepared_rows_either_format_to_valid_rows_or_raise_value_error(image, a, b, c):
    cases = [(format_chartqa, "chartqa", {"image": image, "query": a, "label": [b]}),
             (format_rlaif_v, "rlaif_v", {"image": image, "question": a, "chosen": b, "rejected": c}),
             (format_product_description, "product",
              {"image": image, "Product Name": a, "Category": b, "description": c})]
    for formatter, kind, row in cases:
        try:
            out = formatter(prepare_row(kind, row))
        except ValueError:
            continue
        assert [im.mode for im in out["images"]] == ["RGB"]
        texts = [part["text"] for turn in out["prompt"] + out.get("completion", out.get("chosen", []))
                 for part in turn["content"] if part["type"] == "text"]
        assert all(isinstance(t, str) and t and t == t.strip() for t in texts)


def test_trl_collator_supervises_only_the_answer():
    data = load_dataset("HuggingFaceM4/ChartQA", split="train").select(range(4))
    formatted, _ = format_dataset(data, "chartqa")
    processor = AutoProcessor.from_pretrained("Qwen/Qwen2-VL-7B-Instruct",
                                              size={"shortest_edge": 3136, "longest_edge": 128 * 784})
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)(list(formatted))
    for ids, labels, row in zip(batch["input_ids"], batch["labels"], formatted):
        supervised = processor.decode(ids[labels != -100])
        assert supervised == row["completion"][0]["content"][0]["text"] + "<|im_end|>\n"


def test_undecoded_images_stored_by_path_are_read_not_reported_missing(tmp_path):
    path = tmp_path / "chart.png"
    PILImage.new("LA", (64, 48)).save(path)
    row = format_chartqa(prepare_row("chartqa", {"image": {"bytes": None, "path": str(path)}, "query": "Q?",
                                                 "label": ["1"]}))
    assert row["images"][0].mode == "RGB" and row["images"][0].size == (64, 48)
    with pytest.raises(ValueError, match="missing image"):
        prepare_row("chartqa", {"image": {"bytes": None, "path": str(tmp_path / "gone.png")}, "query": "Q?",
                                "label": ["1"]})


def test_kept_source_columns_stay_aligned_with_the_rows_that_survive():
    """`keep=("label",)` carries each row's own gold labels through validation; a dropped row takes its labels along."""
    from datasets import load_dataset

    raw = load_dataset("HuggingFaceM4/ChartQA", split="train[:6]")
    raw = raw.map(lambda row, i: {"query": "" if i == 2 else row["query"]}, with_indices=True)  # row 2 is unusable
    formatted, bad = format_dataset(raw, "chartqa", keep=("label",))
    assert [i for i, _ in bad] == [2]
    assert formatted["label"] == [labels for i, labels in enumerate(raw["label"]) if i != 2]
    assert [c[0]["content"][0]["text"] for c in formatted["completion"]] == [labels[0] for labels in formatted["label"]]
    assert "label" not in format_dataset(raw, "chartqa")[0].column_names  # without `keep`, source columns go


def test_validate_repairs_the_kept_images_and_leaves_the_others_as_stored():
    """What the notebooks' pipeline relies on: `validate`, then the plain formatter, gives bounded RGB images; an RGB
    image within bounds keeps its stored bytes (no re-encoding)."""
    rows = _chartqa_rows()
    clean, bad = validate(rows, "chartqa")
    assert len(bad) == 6 and [im.mode for im in clean["image"]] == ["RGB", "RGB"]
    stored = clean.cast_column("image", Image(decode=False))["image"]
    assert stored[0]["bytes"] == rows.cast_column("image", Image(decode=False))[0]["image"]["bytes"]
    assert stored[1]["bytes"] != rows.cast_column("image", Image(decode=False))[7]["image"]["bytes"]  # LA, repaired
    formatted = clean.map(format_chartqa, remove_columns=clean.column_names)
    assert formatted["images"][1][0].mode == "RGB"
    assert [r["images"][0].mode for r in rows.select([7]).map(format_chartqa)] == ["LA"]  # negative control: unvalidated


def test_a_label_that_is_not_a_list_of_answers_is_reported():
    """The formatter trains `label[0]`: on a bare string that would be its first character."""
    with pytest.raises(ValueError, match="label is str '42', not a list of answers"):
        prepare_row("chartqa", {"image": PILImage.new("RGB", (20, 20)), "query": "Q?", "label": "42"})
    with pytest.raises(ValueError, match="empty label"):  # a null list, as arrow gives it
        prepare_row("chartqa", {"image": PILImage.new("RGB", (20, 20)), "query": "Q?", "label": None})


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    PILImage.effect_noise((64, 48), 40 + seed).convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_validation_and_formatting_in_several_processes_give_the_same_rows_and_report():
    """`num_proc` changes where the rows are checked, not the verdicts, the repairs or the formatted rows."""
    rows = _chartqa_rows()
    rows = Dataset.from_dict({k: list(rows[k]) * 3 for k in ("query", "label")} |
                             {"image": list(rows.cast_column("image", Image(decode=False))["image"]) * 3},
                             features=rows.features)
    assert find_bad_rows(rows, "chartqa", num_proc=2) == find_bad_rows(rows, "chartqa")
    assert [i for i, _ in find_bad_rows(rows, "chartqa", num_proc=2)] == [i + 8 * k for k in range(3) for i in range(1, 7)]
    one, bad_one = format_dataset(rows, "chartqa")
    two, bad_two = format_dataset(rows, "chartqa", num_proc=2)
    assert bad_one == bad_two and len(one) == len(two) == 6
    stored = [r.cast_column("images", List(Image(decode=False)))["images"] for r in (one, two)]
    assert stored[0] == stored[1] and [list(r) for r in (one["prompt"], one["completion"])] == [
        list(r) for r in (two["prompt"], two["completion"])]


def test_formatting_keeps_the_stored_image_bytes_and_a_plain_map_rewrites_them():
    """format_dataset moves each image's bytes as stored (a JPEG keeps its quality; nothing is decoded or encoded);
    negative control: a plain map over decoded images saves every JPEG again at Pillow's default quality."""
    jpegs = [_jpeg(i) for i in range(3)]
    rows = Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in jpegs], "query": ["Q?"] * 3,
                              "label": [["1"]] * 3},
                             features=Features({"image": Image(), "query": Value("string"),
                                                "label": List(Value("string"))}))
    formatted, bad = format_dataset(rows, "chartqa")
    assert bad == [] and formatted.features["images"] == List(Image())
    assert [r[0]["bytes"] for r in formatted.cast_column("images", List(Image(decode=False)))["images"]] == jpegs
    assert formatted[0]["images"][0].format == "JPEG" and formatted[0]["images"][0].size == (64, 48)
    clean, _ = validate(rows, "chartqa")
    plain = clean.map(format_chartqa, remove_columns=clean.column_names)
    rewritten = [r[0]["bytes"] for r in plain.cast_column("images", List(Image(decode=False)))["images"]]
    assert all(a != b for a, b in zip(rewritten, jpegs))
