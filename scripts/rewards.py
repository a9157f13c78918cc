"""Verifiable rewards for GRPO on ChartQA: plain functions with TRL's reward signature `(completions, **kwargs)`."""

from __future__ import annotations

import re
from typing import Any

from helpers.metrics import relaxed_correctness

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
TAG = re.compile(r"</?answer>", re.I)
MAX_ANSWER_WORDS = 5  # ChartQA's gold answers: a number, a word or a short phrase
MAX_ANSWER_CHARS = 40


def completion_text(completion: Any) -> str | None:
    """The text of one completion: a plain string, or the last message of TRL's conversational `[{"role", "content"}]`
    (content a string or a list of typed parts); None when there is no text at all."""
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, list) or not completion or not isinstance(completion[-1], dict):
        return None
    content = completion[-1].get("content")
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(t for t in texts if isinstance(t, str)) if texts else None
    return content if isinstance(content, str) else None


def final_answer(text: str | None) -> str | None:
    """The answer a completion commits to: the last closed `<answer>…</answer>` if it uses the tag, else its last
    non-empty line, without a trailing full stop; None when empty or when a tag is left unclosed."""
    if not text or not text.strip():
        return None
    if TAG.search(text):
        tagged = ANSWER_TAG.findall(text)
        if not tagged or text.lower().count("<answer>") != text.lower().count("</answer>"):
            return None
        answer = tagged[-1].strip()
    else:
        answer = [line.strip() for line in text.strip().splitlines() if line.strip()][-1]
    answer = answer.rstrip(".").strip()
    return answer or None


def _golds(label: Any) -> list[str]:
    """A row's gold answers as a list of strings (ChartQA's `label` is a list; a bare string is one answer)."""
    if isinstance(label, str):
        return [label]
    return [g for g in label or [] if isinstance(g, str)]


def correctness_reward(completions: list, label: list, **kwargs: Any) -> list[float]:
    """1.0 when the completion's final answer is relaxed-correct (ChartQA: numbers within 5 % of the gold) against
    any gold label of its row, else 0.0; `label` is the data set column TRL passes along, one entry per completion."""
    if len(label) != len(completions):
        raise ValueError(f"{len(completions)} completions for {len(label)} labels")
    rewards = []
    for completion, golds in zip(completions, label):
        answer = final_answer(completion_text(completion))
        hit = answer is not None and any(relaxed_correctness(answer, g) for g in _golds(golds))
        rewards.append(1.0 if hit else 0.0)
    return rewards


def is_short_answer(text: str | None) -> bool:
    """True for what the ChartQA prompt asks for: one line, at most 5 words and 40 characters, no tags."""
    if not text or not text.strip():
        return False
    answer = text.strip()
    return ("\n" not in answer and not TAG.search(answer) and len(answer) <= MAX_ANSWER_CHARS
            and len(answer.split()) <= MAX_ANSWER_WORDS)


def format_reward(completions: list, **kwargs: Any) -> list[float]:
    """1.0 when the whole completion is a bare short answer, as the prompt asks, else 0.0."""
    return [1.0 if is_short_answer(completion_text(c)) else 0.0 for c in completions]
