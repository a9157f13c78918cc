"""Bad input never crashes later and never passes silently (issue 16): every generated fault in the text, the images or
the columns is repaired, reported with its row index and reason, or refused with one clear error naming the column or
argument; no valid row is dropped. The processors themselves are the oracles: a kept row must go through TRL's
collator (or the processor) with exactly the control tokens its chat template puts there, and a kept image must pass
every processor. Outcome counts are printed at the end of the module (`pytest -s`)."""

from __future__ import annotations

import copy
import io
from collections import Counter

import pytest
from datasets import Dataset, DatasetDict, Features, IterableDataset, List, Value
from datasets import Image as ImageFeature
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoProcessor
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from helpers.checks import ESTIMATE_MARGIN, RowCheck
from helpers.data import REQUIRED, _same_answer, format_dataset
from helpers.processors import load_processor
from helpers.vision import (MAX_ASPECT_RATIO, MAX_SIDE, QWEN2VL_FACTOR, QWEN2VL_MAX_ASPECT_RATIO, bound_size,
                            prepare_image)

OUTCOMES: Counter = Counter()
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT_FIELDS = {kind: columns[1:] for kind, columns in REQUIRED.items()}


@pytest.fixture(scope="module", autouse=True)
def outcome_counts():
    yield
    print(f"\nfuzz outcomes ({sum(OUTCOMES.values())} cases): {dict(sorted(OUTCOMES.items()))}")


@pytest.fixture(scope="module")
def processors():
    """The notebooks' processors (Qwen2-VL with a small image cap; idefics2 without splitting, BOS in the template)."""
    return {"qwen2vl": load_processor("Qwen/Qwen2-VL-7B-Instruct", 64 * 28 * 28),
            "idefics2": load_processor("HuggingFaceM4/idefics2-8b")}


def model_tokens(processor) -> list[str]:
    """The oracle's list: every added token of the tokenizer, every special token, the image token (not our code's)."""
    tokenizer = processor.tokenizer
    return sorted({str(t) for t in tokenizer.added_tokens_decoder.values()} | set(tokenizer.all_special_tokens)
                  | {processor.image_token})


def good_row(kind: str, i: int = 0, size=(40, 30)) -> dict:
    image = Image.new("RGB", size, (20 * i % 255, 90, 160))
    return {"chartqa": {"image": image, "query": f"What is bar {i}?", "label": [str(i + 1)]},
            "rlaif_v": {"image": image, "question": f"Describe picture {i}.", "chosen": f"A blue square {i}.",
                        "rejected": f"A red dog {i}."},
            "product": {"image": image, "Product Name": f"Mug {i}", "Category": "Kitchen",
                        "description": f"A mug, model {i}."}}[kind]


def dataset(rows: list[dict]) -> Dataset:
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    features = {key: ImageFeature() if key == "image" else
                List(Value("string")) if key == "label" else Value("string") for key in columns}
    return Dataset.from_dict(columns, features=Features(features))


def texts(formatted: dict) -> list[str]:
    return [part["text"] for key in ("prompt", "completion", "chosen", "rejected") for turn in formatted.get(key, [])
            for part in turn["content"] if part["type"] == "text"]


def control_ids(processor, formatted: dict) -> Counter:
    """How many of each special token id the rendered conversations (prompt + each answer) hold."""
    tokenizer = processor.tokenizer
    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special} | set(tokenizer.all_special_ids)
    counts: Counter = Counter()
    for key in ("completion", "chosen", "rejected"):
        if key in formatted:
            text = processor.apply_chat_template(formatted["prompt"] + formatted[key], tokenize=False)
            counts.update(i for i in tokenizer(text)["input_ids"] if i in special)
    return counts


def benign(formatted: dict) -> dict:
    """The same row with every text replaced by a plain word: what the template alone puts in."""
    out = copy.deepcopy(formatted)
    for key in ("prompt", "completion", "chosen", "rejected"):
        for turn in out.get(key, []):
            for part in turn["content"]:
                if part["type"] == "text":
                    part["text"] = "x"
    return out


def assert_trains(processor, kind: str, formatted: Dataset) -> None:
    """Oracle for kept rows: only the template's own control tokens, and (prompt/completion) TRL's collator accepts
    the batch with the answer alone supervised."""
    rows = list(formatted)
    for row in rows:
        assert control_ids(processor, row) == control_ids(processor, benign(row)), "a forged control token got through"
    if kind != "rlaif_v":
        batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)(rows)
        for ids, labels, row in zip(batch["input_ids"], batch["labels"], rows):
            answer = processor.decode(ids[labels != -100], skip_special_tokens=True).strip()
            assert answer == row["completion"][0]["content"][0]["text"]


def draw_text_field(data: st.DataObject, processors: dict) -> tuple:
    """A processor, a row kind and one of that kind's text fields, drawn in that order."""
    processor = processors[data.draw(st.sampled_from(sorted(processors)))]
    kind = data.draw(st.sampled_from(sorted(REQUIRED)))
    return processor, kind, data.draw(st.sampled_from(TEXT_FIELDS[kind]))


# 1. control tokens of the model's own chat template in user text ----------------------------------------------------

@FUZZ
@given(data=st.data())
def test_control_tokens_in_any_text_field_are_reported_with_row_and_field(data, processors):
    processor, kind, field = draw_text_field(data, processors)
    token = data.draw(st.sampled_from(model_tokens(processor)))
    text = data.draw(no_nul(max_size=8)) + token + data.draw(no_nul(max_size=8))
    rows = [good_row(kind, i) for i in range(3)]
    at = data.draw(st.integers(0, 2))
    rows[at][field] = [text] if field == "label" else text
    formatted, bad = format_dataset(dataset(rows), kind, processor=processor)
    assert len(bad) == 1 and bad[0][0] == at, (token, bad)
    assert bad[0][1].startswith(f"{field} contains the model's control token") and "'<" in bad[0][1]
    assert len(formatted) == 2
    OUTCOMES["reported: control token"] += 1


def no_nul(**kwargs) -> st.SearchStrategy[str]:
    """Any text but NUL bytes (reported as such: section 6)."""
    return st.text(alphabet=st.characters(exclude_characters="\x00"), **kwargs)


near_misses = st.sampled_from(["<|image_pad|", "|image_pad|>", "< image>", "<imag e>", "<|IM_END|>", "<|im_end",
                               "<end_of_utterance", "<|vision_start", "&lt;image&gt;", "<|", "|>", "<>", "</", "<s"])


@FUZZ
@given(data=st.data())
def test_text_without_control_tokens_is_kept_and_trains(data, processors):
    """No false positive: near misses and arbitrary text are kept, and the kept rows train as the template intends."""
    processor, kind, field = draw_text_field(data, processors)
    text = data.draw(st.one_of(no_nul(min_size=1, max_size=30), near_misses.map(lambda s: f"a {s} b")))
    assume(text.strip() and not any(t in text for t in model_tokens(processor)))
    row = good_row(kind)
    row[field] = [text] if field == "label" else text
    assume(kind != "rlaif_v" or not _same_answer(row["chosen"], row["rejected"]))
    formatted, bad = format_dataset(dataset([row]), kind, processor=processor)
    assert bad == [] and len(formatted) == 1
    assert_trains(processor, kind, formatted)
    OUTCOMES["kept: valid text"] += 1


def test_without_the_check_a_control_token_crashes_training_or_forges_a_turn(processors):
    """Negative control: validation without the processor passes both rows; TRL's collator then crashes on the
    first (no row index) and silently supervises a forged <|im_end|> on the second."""
    qwen = processors["qwen2vl"]
    collate = DataCollatorForVisionLanguageModeling(qwen, completion_only_loss=True)
    query = good_row("chartqa") | {"query": "What <|image_pad|> is it?"}
    label = good_row("chartqa") | {"label": ["1<|im_end|>"]}
    for row in (query, label):
        assert format_dataset(dataset([row]), "chartqa")[1] == []
    with pytest.raises(ValueError, match="image"):
        collate(list(format_dataset(dataset([query]), "chartqa")[0]))
    batch = collate(list(format_dataset(dataset([label]), "chartqa")[0]))
    assert qwen.decode(batch["input_ids"][0][batch["labels"][0] != -100]) == "1<|im_end|><|im_end|>\n"
    assert all(format_dataset(dataset([row]), "chartqa", processor=qwen)[1] for row in (query, label))


# 2. images: whatever validation passes, every processor accepts ------------------------------------------------------

@pytest.fixture(scope="module")
def image_oracles(processors):
    split = AutoProcessor.from_pretrained("HuggingFaceM4/idefics2-8b", do_image_splitting=True)
    return [processors["qwen2vl"].image_processor, processors["idefics2"].image_processor, split.image_processor]


sizes = st.one_of(
    st.tuples(st.integers(1, 2500), st.integers(1, 2500)),
    st.tuples(st.integers(1, 4500), st.floats(1, 260)).map(lambda t: (t[0], max(1, round(t[0] / t[1])))),
    st.tuples(st.integers(1, 4500), st.floats(1, 260)).map(lambda t: (max(1, round(t[0] / t[1])), t[0])),
    st.tuples(st.integers(1, 12), st.integers(1, 12)))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=sizes, mode=st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"]))
def test_prepared_images_pass_every_processor_and_refusals_are_the_processors_own(size, mode, image_oracles):
    image = Image.new(mode, size)
    try:
        prepared = prepare_image(image)
    except ValueError as err:
        assert "aspect ratio" in str(err)
        w, h = size
        if max(w, h) / min(w, h) <= QWEN2VL_MAX_ASPECT_RATIO:  # ours: bounded to MAX_SIDE, under one token row
            assert min(w, h) * MAX_SIDE / max(w, h) < QWEN2VL_FACTOR, size
            OUTCOMES["reported: image too elongated for one token row"] += 1
            return
        with pytest.raises(ValueError, match="aspect ratio"):  # no false positive: Qwen2-VL refuses the original too
            image_oracles[0](images=[image.convert("RGB")], return_tensors="pt")
        OUTCOMES["reported: image too elongated"] += 1
        return
    w, h = prepared.size
    assert prepared.mode == "RGB" and max(w, h) / min(w, h) <= MAX_ASPECT_RATIO
    for oracle in image_oracles:
        oracle(images=[prepared], return_tensors="pt")
    OUTCOMES["repaired: image" if (prepared.size, mode) != (size, "RGB") else "kept: valid image"] += 1


def test_the_old_rounding_made_images_the_processor_refuses(image_oracles):
    """Negative control: 4000x20 rounded to 2048x10 (ratio 204.8) as before is refused; the repair gives 2048x11."""
    with pytest.raises(ValueError, match="aspect ratio"):
        image_oracles[0](images=[Image.new("RGB", (2048, round(20 * 2048 / 4000)))], return_tensors="pt")
    assert bound_size(Image.new("L", (4000, 20))).size == (2048, 11)


# 3. column shapes ---------------------------------------------------------------------------------------------------

def png(size=(40, 30), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_image_columns_of_paths_bytes_and_dicts_are_read(tmp_path):
    paths = []
    for i, mode in enumerate(["RGB", "LA", "P"]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new(mode, (40, 30)).save(paths[-1])
    base = {"query": ["Q?"] * 3, "label": [["1"]] * 3}
    columns = (paths, [png()] * 3, [{"bytes": png(), "path": None}] * 3, [{"bytes": None, "path": p} for p in paths])
    for column in columns:
        formatted, bad = format_dataset(Dataset.from_dict({"image": column, **base}), "chartqa")
        assert bad == [] and [im.mode for row in formatted["images"] for im in row] == ["RGB"] * 3
        OUTCOMES["kept: image column shape"] += 1
    formatted, bad = format_dataset(Dataset.from_dict({"image": [paths[0], str(tmp_path / "gone.png"), ""], **base}),
                                    "chartqa")
    assert [i for i, _ in bad] == [1, 2] and "gone.png" in bad[0][1] and bad[1][1] == "missing image"
    OUTCOMES["reported: missing image file"] += 2


def iterable() -> IterableDataset:
    return Dataset.from_dict({"image": [png()], "query": ["Q?"], "label": [["1"]]}).to_iterable_dataset()


BAD_SHAPES = {
    "integer image column": (lambda: Dataset.from_dict({"image": [1, 2], "query": ["Q"] * 2, "label": [["1"]] * 2}),
                             "chartqa", TypeError, "column 'image' holds"),
    "float image column": (lambda: Dataset.from_dict({"image": [1.5], "query": ["Q"], "label": [["1"]]}),
                           "chartqa", TypeError, "column 'image' holds"),
    "list of images": (lambda: Dataset.from_dict({"image": [[png()]], "query": ["Q"], "label": [["1"]]}),
                       "chartqa", TypeError, "column 'image' holds"),
    "IterableDataset": (iterable, "chartqa", TypeError, "IterableDataset"),
    "DatasetDict": (lambda: DatasetDict(train=Dataset.from_dict({"image": [png()], "query": ["Q"], "label": [["1"]]})),
                    "chartqa", TypeError, r"DatasetDict with splits \['train'\]"),
    "pandas-like dict": (lambda: {"image": [png()], "query": ["Q"], "label": [["1"]]}, "chartqa", TypeError,
                         "expected a datasets.Dataset, got dict"),
    "unknown kind": (lambda: Dataset.from_dict({"image": [png()], "query": ["Q"], "label": [["1"]]}), "chart_qa",
                     ValueError, "unknown kind 'chart_qa'"),
    "missing column": (lambda: Dataset.from_dict({"image": [png()], "query": ["Q"]}), "chartqa", KeyError,
                       r"\['label'\]"),
}


@pytest.mark.parametrize("case", list(BAD_SHAPES))
def test_unusable_shapes_are_one_clear_error_naming_the_column_or_argument(case):
    build, kind, error, message = BAD_SHAPES[case]
    with pytest.raises(error, match=message):
        format_dataset(build(), kind)
    OUTCOMES["clear error: data shape"] += 1


odd_values = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), st.just(""),
                       st.just("   "), st.lists(st.integers(), max_size=2))


@FUZZ
@given(kind=st.sampled_from(sorted(REQUIRED)), data=st.data(), value=odd_values)
def test_non_text_values_are_reported_saying_what_they_are(kind, data, value):
    field = data.draw(st.sampled_from(TEXT_FIELDS[kind]))
    row = good_row(kind)
    row[field] = [value] if field == "label" and not isinstance(value, list) else value
    from helpers.data import prepare_row  # the row-level check of format_dataset (arrow cannot hold mixed columns)

    with pytest.raises(ValueError) as err:
        prepare_row(kind, row)
    reason = str(err.value)
    judged = row[field][0] if field == "label" and row[field] else value  # ChartQA's first label is the answer
    empty = judged is None or (field == "label" and judged == []) or (isinstance(judged, str) and not judged.strip())
    assert reason == f"empty {field}" if empty else reason.startswith(f"{field} is {type(judged).__name__}"), reason
    OUTCOMES["reported: non-text field"] += 1


def test_a_numeric_label_says_it_is_a_number():
    rows = Dataset.from_dict({"image": [png(), png()], "query": ["Q?", "Q?"], "label": [[7], [8]]})
    assert format_dataset(rows, "chartqa")[1] == [(0, "label is int '7', not text"), (1, "label is int '8', not text")]
    OUTCOMES["reported: non-text field"] += 2


# 5. lengths ---------------------------------------------------------------------------------------------------------

def rendered_length(processor, formatted: dict) -> int:
    """The oracle: the processor's own token count of the longest rendered conversation, images expanded."""
    return max(len(processor(text=[processor.apply_chat_template(formatted["prompt"] + formatted[key],
                                                                 tokenize=False)],
                             images=formatted["images"])["input_ids"][0])
               for key in ("completion", "chosen", "rejected") if key in formatted)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), words=st.integers(0, 600))
def test_rows_longer_than_the_bound_are_reported_with_their_length(data, words, processors):
    """The decision matches the processor's own count, also within a few tokens of the bound (where the check stops
    estimating and counts exactly), and the estimate stays within its margin."""
    name = data.draw(st.sampled_from(sorted(processors)))
    kind = data.draw(st.sampled_from(sorted(REQUIRED)))
    field = TEXT_FIELDS[kind][0]
    row = good_row(kind, size=data.draw(st.sampled_from([(40, 30), (300, 200), (900, 60)])))
    row[field] = f"{row[field]} " + " ".join(data.draw(st.sampled_from(["chart", "7", "Übersicht", " "])) * words)
    assume(row[field].strip())
    example = list(format_dataset(dataset([row]), kind)[0])[0]
    length = rendered_length(processors[name], example)
    assert abs(RowCheck(processors[name]).estimate(example) - length) < ESTIMATE_MARGIN
    bound = data.draw(st.one_of(st.integers(40, 900), st.integers(length - 3, length + 3)))
    formatted, bad = format_dataset(dataset([row]), kind, processor=processors[name], max_tokens=bound)
    if length > bound:
        assert bad == [(0, f"{length} tokens (text + image) exceed the bound of {bound}")]
        OUTCOMES["reported: too long"] += 1
    else:
        assert bad == [] and len(formatted) == 1
        OUTCOMES["kept: within the length bound"] += 1


def test_the_100k_character_query_is_reported_not_trained(processors):
    row = good_row("chartqa") | {"query": "x" * 100_000}
    assert format_dataset(dataset([row]), "chartqa")[1] == []  # negative control: no bound, no processor: kept
    bad = format_dataset(dataset([row]), "chartqa", processor=processors["qwen2vl"], max_tokens=2048)[1]
    assert len(bad) == 1 and bad[0][0] == 0 and "exceed the bound of 2048" in bad[0][1]
    OUTCOMES["reported: too long"] += 1


@pytest.mark.parametrize("name,kind,models", [("HuggingFaceM4/ChartQA", "chartqa", ["qwen2vl"]),
                                              ("openbmb/RLAIF-V-Dataset", "rlaif_v", ["idefics2", "qwen2vl"]),
                                              ("philschmid/amazon-product-descriptions-vlm", "product", ["qwen2vl"])])
def test_no_false_positive_on_the_shipped_samples(name, kind, models, processors):
    """Every shipped row passes, with the processors the notebooks pair it with, at the scripts' default bound."""
    from datasets import load_dataset

    for split, rows in load_dataset(name).items():
        for model in models:
            assert format_dataset(rows, kind, processor=processors[model], max_tokens=2048)[1] == [], (name, split)
            OUTCOMES["kept: shipped sample rows"] += len(rows)


# 6. rows that would train on nothing or on garbage (issue 26) ---------------------------------------------------------

@pytest.mark.parametrize("kind, field", [(kind, field) for kind, fields in TEXT_FIELDS.items() for field in fields])
def test_a_nul_byte_in_any_text_field_is_reported_with_row_field_and_place(kind, field):
    rows = [good_row(kind, i) for i in range(3)]
    text = "What\x00 is it?"
    rows[1][field] = [text] if field == "label" else text
    formatted, bad = format_dataset(dataset(rows), kind)
    assert bad == [(1, f"{field} contains a NUL byte (\\x00) at character 4")] and len(formatted) == 2
    OUTCOMES["reported: NUL byte"] += 1


def test_negative_control_nothing_else_stops_a_nul_byte(processors):
    """Without the check the row trains: the tokenizers encode NUL as an ordinary token, and the processor's own
    check (control tokens, lengths) passes the row; without the NUL the same row is kept."""
    for processor in processors.values():
        assert len(processor.tokenizer("a\x00b")["input_ids"]) > len(processor.tokenizer("ab")["input_ids"])
    row = good_row("chartqa") | {"query": "What\x00 is it?"}
    check = RowCheck(processors["qwen2vl"], max_tokens=2048)
    from helpers.data import format_chartqa

    check(row, ["query", "label"], format_chartqa(row))  # no complaint
    assert format_dataset(dataset([good_row("chartqa") | {"query": "What is it?"}]), "chartqa")[1] == []


@pytest.mark.parametrize("chosen, rejected", [("A red ball.", "a red ball."), ("A red ball.", "A  red\nball."),
                                              ("A RED BALL.", " a red  ball. ")])
def test_preference_pairs_equal_up_to_case_and_whitespace_are_reported(chosen, rejected):
    rows = [good_row("rlaif_v", 0), good_row("rlaif_v", 1) | {"chosen": chosen, "rejected": rejected}]
    formatted, bad = format_dataset(dataset(rows), "rlaif_v")
    assert bad == [(1, "chosen and rejected differ only in case or whitespace: no preference to learn")]
    assert len(formatted) == 1
    OUTCOMES["reported: no preference"] += 1


@pytest.mark.parametrize("chosen, rejected", [("A red ball.", "A red ball!"), ("A red ball.", "A red bal."),
                                              ("It is 3.", "It is 3.5.")])
def test_negative_control_pairs_that_differ_in_content_are_kept(chosen, rejected):
    row = good_row("rlaif_v") | {"chosen": chosen, "rejected": rejected}
    assert format_dataset(dataset([row]), "rlaif_v")[1] == []
    OUTCOMES["kept: preference pair"] += 1


def test_an_image_too_elongated_for_one_token_row_is_reported_not_kept_as_a_sliver():
    rows = [good_row("chartqa", 0, size=(4000, 20)), good_row("chartqa", 1, size=(20, 4000)),
            good_row("chartqa", 2, size=(2048, 28)), good_row("chartqa", 3, size=(5000, 69))]
    formatted, bad = format_dataset(dataset(rows), "chartqa")
    assert [i for i, _ in bad] == [0, 1] and all("aspect ratio 200.0 > 73.1" in reason for _, reason in bad), bad
    assert "28-px shorter side" in bad[0][1] and "4000x20" in bad[0][1] and "20x4000" in bad[1][1]
    assert [row[0].size for row in formatted["images"]] == [(2048, 28), (2048, 29)]  # kept: at least one row
    assert MAX_ASPECT_RATIO == MAX_SIDE / QWEN2VL_FACTOR
    OUTCOMES["reported: image too elongated for one token row"] += 2


def test_negative_control_the_kept_sliver_lost_most_of_its_image_tokens(processors):
    """What the old bound (200, Qwen2-VL's own) kept: 4000x20 repaired to 2048x11, which Qwen2-VL's processor rounds to
    no token row and scales down whole (784x28: 28 tokens), against 113 tokens for the original (3164x28, held to one
    row past this fixture's 64-token cap)."""
    image_processor = processors["qwen2vl"].image_processor
    sliver = bound_size(Image.new("RGB", (4000, 20)))
    grids = [image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
             for image in (sliver, Image.new("RGB", (4000, 20)))]
    assert sliver.size == (2048, 11) and grids == [[1, 2, 56], [1, 2, 226]]
