"""The prompts and the answer shapes the LLM must return, in one place.

Scoring puts everything that does not depend on the paper first (instructions, answer format,
the active topics sorted by slug) in the system message, so the prefix is byte-identical across
a day's calls and providers' prompt caching bills it once; the paper comes last. The answer
models are what pydantic validates; their JSON schema (without the constraints structured
outputs reject) is what `schema` mode sends.

Bump PROMPT_VERSION when the enrichment prompt or answer changes meaning: it is part of the
enrichment cache key, so papers are enriched again with the new prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from digestbot.models import Paper, Topic

PROMPT_VERSION = "enrich-v1"
REASON_MAX_CHARS = 40
MAX_ABSTRACT_CHARS = 4000  # arXiv caps abstracts at 1,920; this only guards odd input


class TopicScore(BaseModel):
    topic: str = Field(description="topic slug, exactly as listed")
    score: int = Field(ge=0, le=100)
    reason_zh: str = Field(max_length=REASON_MAX_CHARS)


class ScoreAnswer(BaseModel):
    scores: list[TopicScore]


class InstitutionAnswer(BaseModel):
    name: str = Field(min_length=1)
    name_zh: str = ""


class EnrichAnswer(BaseModel):
    title_zh: str = Field(min_length=1)
    summary_zh: str = Field(min_length=1)
    summary_en: str = Field(min_length=1)
    abstract_zh: str = Field(min_length=1)
    institutions: list[InstitutionAnswer]


_SCORE_INSTRUCTIONS = f"""\
You are the curator of an arXiv daily digest (arXiv 每日学术速递). Researchers subscribe to \
topics; for one paper at a time you judge how well it matches each requested topic, as a \
researcher subscribed to that topic would judge it.

Score each topic from 0 to 100:
- 90–100: the paper's main contribution is squarely on the topic.
- 70–89: clearly on the topic; a subscriber would want to read it.
- 40–69: partly relevant: the paper uses or touches the topic but is not about it.
- 0–39: unrelated, or only mentions words of the topic.
Judge by each topic's description, including what it says is not part of it.

For each topic give reason_zh: one short Chinese phrase of at most {REASON_MAX_CHARS} \
characters naming what in the paper makes it relevant or not, e.g. "提出基于GRPO的多轮工具调用\
强化学习框架" or "语音识别工作,与后训练无关".

Reply with only a JSON object, no other text, in exactly this form:
{{"scores": [{{"topic": "post-training", "score": 85, "reason_zh": "用GRPO训练推理模型并分析奖励设计"}}]}}
with one entry for every requested topic slug and no others.

Topics (slug: 中文名 / English name — description):
"""

_ENRICH_INSTRUCTIONS = """\
You prepare one entry of a Chinese arXiv daily digest (arXiv 每日学术速递) for researchers.

Reply with only a JSON object, no other text, in exactly this form:
{"title_zh": "…", "summary_zh": "…", "summary_en": "…", "abstract_zh": "…", \
"institutions": [{"name": "Tsinghua University", "name_zh": "清华大学"}]}

- title_zh: the title in natural Chinese; keep names of models, methods and datasets \
(GRPO, LLaMA, MMLU) as written.
- summary_zh: ONE Chinese sentence (at most about 80 characters) saying what the paper does \
and what it finds, e.g. "本文提出…方法,在…上显著提升…".
- summary_en: the same single sentence in English.
- abstract_zh: a faithful, complete Chinese translation of the whole abstract, sentence by \
sentence. Do not summarise, shorten, omit or add anything.
- institutions: the authors' institutions in author order, each once, taken ONLY from the \
"First page" text of the message. Copy `name` exactly as it is written there; `name_zh` is its \
usual Chinese name, or "" if you are not sure. If the first page text is missing or names no \
institution, return []. Never infer institutions from author names, e-mail domains you have \
to guess, or your own knowledge.
"""


def topic_line(topic: Topic) -> str:
    return f"- {topic.slug}: {topic.name_zh} / {topic.name_en} — {' '.join(topic.description.split())}"


def score_system(topics: Sequence[Topic]) -> str:
    """The static prefix: instructions, then the topics sorted by slug (stable across calls)."""
    lines = [topic_line(t) for t in sorted(topics, key=lambda t: t.slug)]
    return _SCORE_INSTRUCTIONS + "\n".join(lines) + "\n"


def _paper_block(paper: Paper) -> str:
    return (
        f"arXiv id: {paper.versioned_id}\n"
        f"Title: {' '.join(paper.title.split())}\n"
        f"Categories: {', '.join(paper.categories) or 'unknown'}\n"
        f"Abstract: {' '.join(paper.abstract.split())[:MAX_ABSTRACT_CHARS]}"
    )


def score_user(paper: Paper, slugs: Sequence[str]) -> str:
    return f"Topics to score: {', '.join(slugs)}\n\n{_paper_block(paper)}"


def enrich_system() -> str:
    return _ENRICH_INSTRUCTIONS


def enrich_user(paper: Paper, first_page: str) -> str:
    authors = ", ".join(a.name for a in paper.authors) or "unknown"
    page = (f"<<<\n{first_page}\n>>>" if first_page.strip()
            else "(not available: return institutions as [])")
    return (f"{_paper_block(paper)}\nAuthors: {authors}\n\n"
            f"First page (text extracted from the PDF, may be garbled):\n{page}")


def retry_message(error: str) -> str:
    """What the model sees after an unusable answer: the validation error, then the ask again."""
    return (f"Your answer could not be used: {error}\n"
            "Reply again with only the corrected JSON object in the required form.")


# Keywords structured outputs (strict mode) does not accept; pydantic still enforces them.
_UNSUPPORTED = frozenset({"title", "default", "minimum", "maximum", "minLength", "maxLength"})


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form `response_format: json_schema, strict` requires:
    every property required, no additional properties, no unsupported keywords."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items() if k not in _UNSUPPORTED}
        if "properties" in node:
            out["properties"] = {k: walk(v) for k, v in node["properties"].items()}
            out["required"] = list(node["properties"])
            out["additionalProperties"] = False
        return out

    return walk(model.model_json_schema())
