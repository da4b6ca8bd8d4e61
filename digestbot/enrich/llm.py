"""One LLM client for scoring and enrichment: JSON answers, retries, accounting.

- One `AsyncOpenAI` client per run, at most `llm_concurrency` requests in flight.
- Transport trouble (429, 5xx, timeouts, refused connections) is retried by the SDK with
  exponential backoff that honours Retry-After; what still fails is an `error` outcome and the
  caller falls back to the offline result for that paper.
- An answer that cannot be used (blank, truncated, not JSON, wrong shape, a refusal) gets ONE
  retry that shows the model the validation error; a second failure is a `fallback` outcome.
- A 401/403 stops the run: every further call would fail the same way.
- After several transport errors in a row the endpoint is considered down and the rest of
  the run skips the LLM, so a dead server costs seconds, not hours of backoff.
Every request's tokens (prompt, completion, cached), latency and outcome go to `llm_calls`,
one row per paper it was about (a scoring request covers several), sharing a request id.
The API key is never logged and is scrubbed from any error text we keep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import openai
from pydantic import BaseModel, ValidationError

from digestbot.config import Settings
from digestbot.enrich import prompts
from digestbot.errors import AnswerError, DigestbotError
from digestbot.store import Store, now_iso, protect, redact

log = logging.getLogger(__name__)

AUTH_ERROR = "LLM 认证失败 / authentication failed: check OPENAI_API_KEY"
# Consecutive transport errors after which the endpoint is treated as down for this run.
BREAKER_ERRORS = 5

M = TypeVar("M", bound=BaseModel)


@dataclass
class Usage:
    prompt: int = 0
    completion: int = 0
    cached: int = 0

    def add(self, response: Any) -> None:
        """Add a response's usage; OpenAI reports cached tokens in prompt_tokens_details,
        DeepSeek as prompt_cache_hit_tokens."""
        usage = getattr(response, "usage", None)
        if usage is None:
            return
        self.prompt += usage.prompt_tokens or 0
        self.completion += usage.completion_tokens or 0
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", None) if details else None
        if cached is None:
            cached = getattr(usage, "prompt_cache_hit_tokens", None)
        self.cached += cached or 0


@dataclass
class Outcome(Generic[M]):
    """One logical call: its answer (None unless ok/retried) and what it cost."""

    value: M | None
    outcome: str  # ok | retried | fallback | error
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_ms: int = 0
    # False when the breaker skipped the call: nothing was sent, nothing is recorded.
    called: bool = True


class LLMClient:
    """`ask()` for a validated JSON answer; use `async with` so the connections close."""

    def __init__(self, settings: Settings, *, timeout: float = 120.0, max_retries: int = 4) -> None:
        if not settings.openai_api_key:
            raise DigestbotError("未设置 OPENAI_API_KEY,请用离线评分 / OPENAI_API_KEY is not set; "
                                 "use the offline scorer (--offline)")
        self.model = settings.llm_model
        self.mode = settings.llm_json
        self.batch = settings.llm_batch  # papers per scoring request
        protect(settings)  # an error body that quotes the key stays out of logs and llm_calls
        self._client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key.get(),
            base_url=settings.openai_base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._slots = asyncio.Semaphore(settings.llm_concurrency)
        self._errors_in_a_row = 0
        self.down: str | None = None  # why the breaker opened

    @property
    def scorer(self) -> str:
        return f"llm:{self.model}"

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    async def ask(
        self,
        messages: list[dict[str, str]],
        answer: type[M],
        *,
        name: str,
        check: Callable[[M], None] | None = None,
        schema: type[BaseModel] | None = None,
        attempts: int = 2,
    ) -> Outcome[M]:
        """Send `messages`, return the answer validated as `answer` (and by `check`).

        `schema` is the shape `schema` mode asks for when it differs from what is parsed (a
        batch is parsed leniently and checked item by item); `attempts=1` skips the
        validation retry, for a caller that handles an unusable answer itself.
        """
        usage = Usage()
        started = time.monotonic()
        convo = list(messages)
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                async with self._slots:
                    # Checked once a slot is ours: calls queued before the breaker opened skip too.
                    if self.down:
                        return Outcome(None, "error", self.down, called=False)
                    response = await self._client.chat.completions.create(
                        model=self.model, messages=convo, **self._format(schema or answer, name)
                    )
            except (openai.AuthenticationError, openai.PermissionDeniedError):
                raise DigestbotError(AUTH_ERROR) from None
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                error = redact(_describe(exc))
                self._note_error(error)
                return Outcome(None, "error", error, usage, _ms_since(started))
            self._errors_in_a_row = 0
            usage.add(response)
            content = _content(response)
            try:
                value = parse_answer(response, answer)
                if check:
                    check(value)
            except AnswerError as exc:
                error = redact(str(exc))
                log.info("unusable %s answer (attempt %d): %s", name, attempt, error)
                convo += [{"role": "assistant", "content": content or "(empty)"},
                          {"role": "user", "content": prompts.retry_message(error)}]
                continue
            outcome = "ok" if attempt == 1 else "retried"
            return Outcome(value, outcome, None, usage, _ms_since(started))
        return Outcome(None, "fallback", error, usage, _ms_since(started))

    def _format(self, answer: type[BaseModel], name: str) -> dict[str, Any]:
        if self.mode == "schema":
            schema = prompts.strict_schema(answer)
            return {"response_format": {"type": "json_schema", "json_schema": {
                "name": name, "strict": True, "schema": schema}}}
        if self.mode == "object":
            return {"response_format": {"type": "json_object"}}
        return {}

    def _note_error(self, error: str) -> None:
        self._errors_in_a_row += 1
        if self._errors_in_a_row >= BREAKER_ERRORS and not self.down:
            self.down = f"LLM unavailable after {BREAKER_ERRORS} failed calls in a row ({error})"
            log.warning("%s; offline results for the rest of this run "
                        "(a server without structured outputs needs DIGESTBOT_LLM_JSON=object "
                        "or prompt)", self.down)


def _describe(exc: openai.OpenAIError) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {str(exc.message)[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _content(response: Any) -> str | None:
    choices = getattr(response, "choices", None) or []
    return choices[0].message.content if choices else None


_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def extract_json(text: str) -> Any:
    """Parse the JSON object in `text`: bare, in a ```json fence, or amid a little prose."""
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(text[start : end + 1])
            except json.JSONDecodeError:
                pass
        raise AnswerError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None


def parse_answer(response: Any, answer: type[M]) -> M:
    """The response's content validated as `answer`, or AnswerError saying what is wrong."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise AnswerError("the answer had no choices")
    choice = choices[0]
    refusal = getattr(choice.message, "refusal", None)
    if refusal:
        raise AnswerError(f"you refused ({refusal[:200]}); this is a routine academic task")
    content = choice.message.content or ""
    if not content.strip():
        raise AnswerError("the answer was blank")
    if choice.finish_reason == "length":
        raise AnswerError("the answer was cut off (too long); be more concise")
    data = extract_json(content)
    try:
        return answer.model_validate(data)
    except ValidationError as exc:
        raise AnswerError(f"wrong shape: {shape_problems(exc)}") from None


def shape_problems(exc: ValidationError) -> str:
    """The first few validation errors as `path.to.field: what is wrong`, for the model."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
                     for e in exc.errors()[:5])


def record_call(store: Store, kind: str, model: str, result: Outcome[Any],
                rows: Sequence[tuple[str, int | None, str, str | None]]) -> None:
    """The llm_calls rows of one logical call (a validation retry is part of it): one per
    paper it was about, as (arxiv_id, version, outcome, error), under one request id. The
    request's tokens are split over its rows, so every sum over llm_calls is the bill."""
    if not result.called or not rows:
        return
    request = uuid.uuid4().hex[:16]
    created = now_iso()
    shares = [_split(total, len(rows)) for total in
              (result.usage.prompt, result.usage.completion, result.usage.cached)]
    store.db["llm_calls"].insert_all([{
        "kind": kind, "arxiv_id": arxiv_id, "version": version, "model": model,
        "prompt_tokens": shares[0][i], "completion_tokens": shares[1][i],
        "cached_tokens": shares[2][i], "latency_ms": result.latency_ms,
        "outcome": outcome, "error": error and redact(error), "request": request,
        "created_at": created,
    } for i, (arxiv_id, version, outcome, error) in enumerate(rows)])


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` whole shares that add up to it exactly."""
    share, rest = divmod(total, parts)
    return [share + (i < rest) for i in range(parts)]
