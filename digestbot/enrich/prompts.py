"""The prompts and the answer shapes the LLM must return, in one place.

Scoring puts everything that does not depend on the papers first (instructions, rubric, answer
format, the active topics sorted by slug) in the system message, so the prefix is
byte-identical across a day's requests; the papers come last, several per request. Providers
cache a repeated prefix only from a minimum length (OpenAI: 1,024 tokens, then in steps of
128), so the instructions alone are longer than that (`estimate_tokens`): a detailed rubric is
what makes scores of different papers and requests comparable, and caching makes it cheap.
The answer models are what pydantic validates; their JSON schema (without the constraints
structured outputs reject) is what `schema` mode sends.

Bump PROMPT_VERSION when the enrichment prompt or answer changes meaning: it is part of the
enrichment cache key, so papers are enriched again with the new prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from digestbot.models import Paper, Topic

PROMPT_VERSION = "enrich-v1"
REASON_MAX_CHARS = 40
# OpenAI's prompt caching starts at this many prompt tokens.
CACHE_MIN_TOKENS = 1024
MAX_ABSTRACT_CHARS = 4000  # arXiv caps abstracts at 1,920; this only guards odd input
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


class TopicScore(BaseModel):
    topic: str = Field(description="topic slug, exactly as listed")
    score: int = Field(ge=0, le=100)
    reason_zh: str = Field(max_length=REASON_MAX_CHARS)


class PaperScores(BaseModel):
    id: str = Field(description="the paper's arXiv id, exactly as written in the request")
    scores: list[TopicScore]


class ScoreAnswer(BaseModel):
    """The answer's shape, as `schema` mode sends it: one item per paper of the request."""

    papers: list[PaperScores]


class ScoreReply(BaseModel):
    """What is parsed: the envelope only. Each item is checked on its own (`PaperScores`),
    so one bad item costs that paper alone, not the whole request."""

    papers: list[Any]


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
topics and receive, every morning, the new papers that match them. Each message gives you \
several papers (title, categories, abstract) and the topics to score; for every paper you \
judge how well it matches each requested topic, as a researcher subscribed to that topic \
would judge it. Judge each paper on its own: the other papers in the message are unrelated \
and must not shift its scores.

## Scores
Score each requested topic from 0 to 100:
- 90–100: the paper's main contribution is squarely on the topic: a new method, analysis, \
dataset or benchmark whose subject is the topic itself.
- 70–89: clearly on the topic; a subscriber would want to read it, even if the topic is one \
of two main threads of the paper or the contribution is incremental.
- 40–69: partly relevant: the paper uses or touches the topic (as a tool, a baseline, one \
experiment, a component of a larger system) but is not about it.
- 10–39: unrelated in substance, though it shares a word, a field or a dataset with the topic.
- 0–9: nothing to do with the topic.
Subscribers are emailed papers at 60 or 70 and above, so the 60–75 band is where care matters: \
ask whether a subscriber who reads only this topic would be glad or annoyed to receive it.

## How to judge
- Judge by the topic's description, including what it says is not part of it (不包括 / \
excluded): a paper mainly about an excluded area scores at most 39 for the topic, even when \
it shares its vocabulary, and usually belongs to the topic the description points to.
- Judge from the title and abstract only. The arXiv categories are a weak hint, never \
evidence on their own; do not guess from author names, venues or affiliations.
- Relevance is not quality: do not raise a score for strong results, big models or bold \
claims, and do not lower it for a small or negative study.
- A word in the motivation, related work or future work is not relevance: "our method \
could help agents" does not make a paper about agents.
- Applying a technique is not studying it: fine-tuning a model for medical question \
answering is partly post-training (40–69) unless the training method is the contribution.
- Surveys, position papers and tutorials score by their subject like any paper; a survey of \
the topic itself is 85–95.
- Benchmarks and datasets score high for the topic whose capability they measure, and as \
partly relevant for the topics of the models they happen to test.
- Theory papers score by their subject like empirical ones: a convergence proof for a \
policy-gradient method is reinforcement learning, a scaling-law fit is pretraining.
- When the abstract is missing, very short or not in English, judge the title with care \
and stay at or below 75 unless the title alone leaves no doubt.
- Neighbouring topics overlap, and a paper on the overlap scores high on both: \
reinforcement learning that trains a language model to reason is post-training and \
reasoning; preference optimization for harmlessness is post-training and safety; a \
retrieval tool used by an agent is agents, and RAG only if retrieval is what is studied; \
a new benchmark of agents is evaluation and agents.
- Scores are independent across topics: one paper may score 90 on two topics, or low on \
all of them. Most papers are unrelated to most topics, so most scores are below 40; do \
not spread scores evenly or round everything to the same value.

## Reasons
For each topic give reason_zh: one short Chinese phrase of at most {REASON_MAX_CHARS} \
characters naming what in the paper makes it relevant or not: the method, task or finding, \
e.g. "提出基于GRPO的多轮工具调用强化学习框架" or "语音识别工作,与后训练无关". Keep names of \
methods, models and datasets as written (GRPO, LLaMA, MMLU). Do not start with "该论文" or \
"本文", and never repeat the score in words.

## Answer
Reply with only a JSON object, no other text, in exactly this form (two papers, two topics):
{{"papers": [
 {{"id": "2608.00001v1", "scores": [
  {{"topic": "post-training", "score": 88, "reason_zh": "用GRPO训练推理模型并分析奖励设计"}},
  {{"topic": "speech-recognition", "score": 3, "reason_zh": "文本推理工作,不涉及语音"}}]}},
 {{"id": "2608.00002v2", "scores": [
  {{"topic": "post-training", "score": 45, "reason_zh": "用LoRA微调做医疗问答,训练方法非重点"}},
  {{"topic": "speech-recognition", "score": 12, "reason_zh": "医疗文本问答,与语音无关"}}]}}]}}
- One item per paper of the message, in the order given, each once, with its arXiv id \
copied exactly as written after "arXiv id:" (version suffix included); no other ids.
- In every item, one entry for every requested topic slug and no others.
- score is a whole number from 0 to 100; reason_zh is at most {REASON_MAX_CHARS} characters.

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


def estimate_tokens(text: str) -> int:
    """Tokens of `text` without a tokenizer, by the README's rule: 4 characters a token for
    English and JSON (prose runs 4–4.5 in GPT tokenizers, JSON and hyphenated slugs fewer),
    and for Chinese the cautious end of its 1–1.5 characters a token. Used to keep the
    scoring prefix clearly above CACHE_MIN_TOKENS, so it errs low rather than high."""
    return tokens_of(len(text), len(_NON_ASCII.findall(text)))


def tokens_of(chars: int, wide: int) -> int:
    """estimate_tokens of a text of `chars` characters, `wide` of them not ASCII."""
    return round((chars - wide) / 4 + wide / 1.5)


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


def score_user(papers: Sequence[Paper], slugs: Sequence[str]) -> str:
    """The part that changes: the topics asked for, then the papers, each after its id."""
    blocks = "\n\n".join(f"[{n}] {_paper_block(p)}" for n, p in enumerate(papers, 1))
    return (f"Topics to score: {', '.join(slugs)}\n"
            f"Papers: {len(papers)}, one item each\n\n{blocks}")


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
