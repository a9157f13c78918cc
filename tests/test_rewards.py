"""The GRPO rewards of notebook 06 on hand-made completions, well-formed and malformed, in TRL's two layouts."""

from __future__ import annotations

import inspect

import pytest

from rewards import (completion_text, correctness_reward, final_answer, format_reward,
                             is_short_answer)


def conv(text):
    """A conversational completion as TRL 1.16 passes it: one assistant message."""
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("completion, text", [
    ("42", "42"),
    (conv("42"), "42"),
    (conv([{"type": "text", "text": "4"}, {"type": "text", "text": "2"}]), "42"),
    (conv(None), None),
    (conv([{"type": "image"}]), None),
    ([], None),
    (None, None),
    ([{"role": "assistant"}], None),
    (["not a message"], None),
])
def test_completion_text_reads_both_layouts_and_nothing_else(completion, text):
    assert completion_text(completion) == text


@pytest.mark.parametrize("text, answer", [
    ("42", "42"),
    ("  Yes. ", "Yes"),
    ("The bars show...\n\n17.5", "17.5"),  # the final line is the answer
    ("<answer>17</answer>", "17"),
    ("first <answer>12</answer> then <answer>15</answer>", "15"),  # several answers: the last one counts
    ("<answer>12", None),  # unclosed tag
    ("<answer>12</answer><answer>", None),  # a tag left open after a closed one
    ("<answer> </answer>", None),
    ("", None),
    ("   \n  ", None),
    (None, None),
    ("...", None),
])
def test_final_answer(text, answer):
    assert final_answer(text) == answer


def test_correctness_uses_chartqa_relaxed_accuracy():
    completions = [conv("41"), conv("44.2"), conv("Yes"), conv("yes."), conv("12%"), conv("no")]
    labels = [["42"], ["42"], ["yes"], ["Yes"], ["0.12"], ["Yes"]]
    assert correctness_reward(completions, labels) == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]


def test_correctness_any_gold_counts_and_a_bare_string_is_one_gold():
    assert correctness_reward(["b", "b"], [["a", "b"], "b"]) == [1.0, 1.0]
    assert correctness_reward(["a"], [[]]) == [0.0]  # no gold: nothing can be right


@pytest.mark.parametrize("completion", [
    conv(""), conv(None), conv("<answer>42"), conv("forty-two"), None, conv("4" * 100_000 + "2"),
    conv("42 " * 50_000), [{"role": "assistant"}],
])
def test_correctness_gives_zero_to_malformed_completions(completion):
    assert correctness_reward([completion], [["42"]]) == [0.0]


def test_correctness_reward_accepts_trl_keyword_arguments():
    """TRL calls every reward with prompts, completions, completion_ids, every data set column and its extras."""
    extras = dict(prompts=[[{"role": "user", "content": "q"}]], completion_ids=[[1, 2]], images=[[None]],
                  trainer_state=None, log_extra=print, log_metric=print)
    assert correctness_reward(completions=[conv("42")], label=[["42"]], **extras) == [1.0]
    assert format_reward(completions=[conv("42")], label=[["42"]], **extras) == [1.0]
    params = inspect.signature(correctness_reward).parameters
    assert "completions" in params and any(p.kind is p.VAR_KEYWORD for p in params.values())


def test_correctness_rejects_misaligned_labels():
    with pytest.raises(ValueError, match="2 completions for 1 labels"):
        correctness_reward(["1", "2"], [["1"]])


@pytest.mark.parametrize("text, short", [
    ("42", True),
    ("Dark blue", True),
    ("one two three four five", True),
    ("one two three four five six", False),
    ("x" * 41, False),
    ("12\n15", False),
    ("<answer>42</answer>", False),  # the ChartQA prompt asks for a bare answer, not a tag
    ("", False),
    (None, False),
    ("The value for 2019 is 42 percent.", False),
    ("4" * 100_000, False),
])
def test_is_short_answer(text, short):
    assert is_short_answer(text) is short


def test_format_reward_on_a_batch():
    completions = [conv("42"), conv("It is 42, as the chart shows clearly."), conv(None), conv("<answer>4</answer>")]
    assert format_reward(completions) == [1.0, 0.0, 0.0, 0.0]


def test_rewards_score_what_they_claim_negative_control():
    """A right answer in the wrong format scores on correctness only; a short wrong answer on format only."""
    verbose_right = conv("Looking at the chart, the 2019 bar is the tallest.\n42")
    short_wrong = conv("17")
    assert correctness_reward([verbose_right, short_wrong], [["42"], ["42"]]) == [1.0, 0.0]
    assert format_reward([verbose_right, short_wrong]) == [0.0, 1.0]
