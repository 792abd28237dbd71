"""The window guard (prompts.build): a truncated context never splits a character and never ends
above its budget, whatever the script and however small the budget."""

import pytest

from pipelines import prompts, tokens
from pipelines.strategies import Block, Context

TEXTS = {
    "cjk": "长上下文模型可以一次读完整份文件，但检索增强生成只读取最相关的片段。" * 40,
    "emoji": "Launch day 🚀🎉 went well 👍🏽 — the team 👩‍💻👨‍🔬 shipped it ✅. " * 40,
    "mixed": "Kelvane 河长 212 公里 🌊 and runs north 北 to the sea. 東京 😀 " * 40,
}


def context(text: str) -> Context:
    return Context((Block("doc.txt", text),), ("doc.txt",), ("doc.txt",), context_doc_ids=("doc.txt",))


@pytest.mark.parametrize("name", TEXTS)
def test_truncation_never_cuts_inside_a_character_nor_exceeds_the_budget(name):
    ctx = context(TEXTS[name])
    total = tokens.count(prompts.render_context(ctx))
    for budget in [*range(0, 40), *range(40, 400, 7), total - 1]:
        prompt = prompts.build(ctx, "q?", "", "{context}\n{question}", budget, "truncate")
        sent = prompt.messages[-1]["content"][: -len("\nq?")]
        assert prompt.status == "truncated"
        assert "\ufffd" not in sent, (name, budget)
        assert tokens.count(sent) <= budget, (name, budget, tokens.count(sent))
        assert prompt.context_tokens == tokens.count(sent)
        assert prompt.dropped_tokens > 0


def test_fit_keeps_head_and_tail_and_says_what_it_dropped():
    text = "alpha " * 300 + "omega"
    kept, dropped = prompts.fit(text, 60)
    assert kept.startswith("alpha") and kept.endswith("omega") and "tokens omitted" in kept
    assert tokens.count(kept) <= 60 and dropped > 0
    assert prompts.fit("short text", 60) == ("short text", 0)
