"""An OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 with scripted answers.

openai ≥ 3 has its own HTTP stack, so only a real server intercepts it: point
`OPENAI_BASE_URL` at `fake.url`. Replies queued with `fake.script(...)` are served first, in
order (429 then success, 500, invalid JSON, wrong schema, blank, refusal, truncated, slow,
401); after that `answer(body)` makes a plausible valid reply from the request itself:

- scoring (the user message starts with "Topics to score:"): one item per paper of the
  message, by its "arXiv id", scored `score_for(title, slug)`, by default 90 when the slug's
  words occur in the title, else 10;
- enrichment: Chinese fields derived from the title, and as institutions every line of the
  first-page block that names a university/institute/lab/company — like a model that reads
  only the text it is given.

`response_format` is checked as OpenAI checks it: `json_object` needs the word "json" in the
messages, `json_schema` needs a name and a schema (400 otherwise). Without one (`prompt`
mode, servers like Ollama) the generated answer comes in a ```json fence after a line of
prose, as chatty local models write it.

`edited(fn)` answers from the request, then lets `fn(answer, body)` spoil the answer (drop a
paper, change an id or a score) whichever request it lands on.

Usage is reported as OpenAI does (`prompt_tokens_details.cached_tokens`), or as DeepSeek does
(`prompt_cache_hit_tokens`) with `deepseek=True`. Tokens are counted by the README's rule,
`prompts.estimate_tokens` (4 ASCII characters or 1.5 other characters a token). Caching works
as OpenAI describes it: a prompt (response format, then the messages in order) is in the
cache once a request with it has been answered; a later prompt that starts with a cached
prefix of at least 1,024 tokens reports the longest such prefix, in steps of 128 tokens, as
cached (DeepSeek: from 64, in steps of 64). A prompt shorter than the minimum is never cached.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from digestbot.enrich.prompts import estimate_tokens, tokens_of
from tests.fakes.http import FakeServer, Request, Response

# The key every test uses; tests assert it never reaches output, logs or the database.
OPENAI_TEST_KEY = "sk-test-DO-NOT-LEAK-4242"

INSTITUTION_RE = re.compile(r"Universit|Institut|Laborator|\bLab\b|Inc\.|Academy|College")


@dataclass
class Reply:
    """One scripted reply; `content=None` with status 200 means "answer from the request"."""

    status: int = 200
    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    delay: float = 0.0
    headers: dict[str, str] | None = None
    error: str = ""
    # Called with the generated answer and the request body; returns the answer to send.
    edit: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None


def ok(content: str | dict[str, Any]) -> Reply:
    return Reply(content=content if isinstance(content, str) else json.dumps(content))


def status(code: int, message: str = "scripted failure") -> Reply:
    # retry-after-ms keeps the SDK's backoff to a few milliseconds in tests.
    return Reply(status=code, headers={"retry-after-ms": "5"}, error=message)


def blank() -> Reply:
    return Reply(content="")


def refusal(text: str = "I can't help with that.") -> Reply:
    return Reply(content=None, refusal=text)


def truncated(text: str = '{"scores": [{"topic": "post-tr') -> Reply:
    return Reply(content=text, finish_reason="length")


def slow(seconds: float) -> Reply:
    return Reply(delay=seconds)


def edited(edit: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Reply:
    return Reply(edit=edit)


def default_score(title: str, slug: str) -> int:
    words = slug.replace("-", " ")
    return 90 if words in title.lower() or slug in title.lower() else 10


class FakeOpenAI:
    def __init__(self, *, score_for: Callable[[str, str], int] = default_score,
                 delay: float = 0.0, deepseek: bool = False) -> None:
        self.score_for = score_for
        self.delay = delay
        self.deepseek = deepseek
        self._script: deque[Reply] = deque()
        self._cached_prefixes: set[str] = set()  # hashes of prompt prefixes at cache steps
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.usages: list[dict[str, Any]] = []  # every usage object sent, in order
        self.server = FakeServer(self._handle)
        self.url = f"{self.server.url}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def reset(self, *, score_for: Callable[[str, str], int] = default_score, delay: float = 0.0,
              deepseek: bool = False) -> None:
        """Forget everything, so one server can serve a module's tests (starting one costs
        a shutdown poll of half a second)."""
        with self._lock:
            self.score_for, self.delay, self.deepseek = score_for, delay, deepseek
            self._script.clear()
            self._cached_prefixes.clear()
            self.server.requests.clear()
            self.in_flight = self.max_in_flight = 0
            self.usages.clear()

    def use(self, monkeypatch: Any, key: str) -> FakeOpenAI:
        """Reset, and point OPENAI_API_KEY/OPENAI_BASE_URL here for one test."""
        self.reset()
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", self.url)
        return self

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of every chat completion request received, in order."""
        return [r.json() for r in self.server.requests if r.path.endswith("/chat/completions")]

    def _handle(self, request: Request) -> Response:
        if not request.path.endswith("/chat/completions") or request.method != "POST":
            return Response.json({"error": {"message": "not found"}}, 404)
        with self._lock:
            reply = self._script.popleft() if self._script else Reply()
        body = request.json()
        if reply.status != 200:
            code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(reply.status)
            self._wait(reply.delay)
            return Response.json({"error": {"message": reply.error, "type": "error", "code": code}},
                                 reply.status, **(reply.headers or {}))
        if problem := _format_problem(body):
            return Response.json({"error": {"message": problem, "type": "invalid_request_error",
                                            "code": None}}, 400)
        content = reply.content
        if content is None and reply.refusal is None:
            answer = self.answer(body)
            if reply.edit:
                answer = reply.edit(answer, body)
            content = json.dumps(answer, ensure_ascii=False)
            if "response_format" not in body:
                content = f"Here is the JSON you asked for:\n```json\n{content}\n```"
        message = {"role": "assistant", "content": content, "refusal": reply.refusal}
        prompt = _prompt_text(body)
        steps = self._steps(prompt)
        cached = self._cached(steps)  # as the request arrives
        self._wait(reply.delay or self.delay)
        self._cache(steps)  # answered: its prefixes are in the cache from now on
        return Response.json({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": self._usage(prompt, cached, content or ""),
        })

    def _wait(self, seconds: float) -> None:
        """Answer after `seconds`, counting how many requests are in flight meanwhile."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _steps(self, prompt: str) -> list[tuple[int, str]]:
        """(tokens, hash of the prompt's first that many tokens) at every cacheable step."""
        first, step = (64, 64) if self.deepseek else (1024, 128)
        wide = [m.start() for m in re.finditer(r"[^\x00-\x7f]", prompt)]

        def tokens_before(n: int) -> int:
            return tokens_of(n, bisect.bisect_left(wide, n))

        out, start = [], 0
        for target in range(first, tokens_before(len(prompt)) + 1, step):
            # The shortest prefix of `target` tokens (the estimate grows with the prefix).
            end = bisect.bisect_left(range(len(prompt) + 1), target, lo=start, key=tokens_before)
            out.append((target, hashlib.sha1(prompt[:end].encode()).hexdigest()))
            start = end
        return out

    def _cached(self, steps: list[tuple[int, str]]) -> int:
        with self._lock:
            hits = [n for n, h in steps if h in self._cached_prefixes]
        return max(hits, default=0)

    def _cache(self, steps: list[tuple[int, str]]) -> None:
        with self._lock:
            self._cached_prefixes.update(h for _, h in steps)

    def _usage(self, prompt: str, cached: int, content: str) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": estimate_tokens(prompt),
                                 "completion_tokens": estimate_tokens(content), "total_tokens": 0}
        if self.deepseek:
            usage |= {"prompt_cache_hit_tokens": cached,
                      "prompt_cache_miss_tokens": usage["prompt_tokens"] - cached}
        else:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        with self._lock:
            self.usages.append(usage)
        return usage

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        # After a validation retry the paper is in the first user message.
        paper = next(m["content"] for m in body["messages"] if m["role"] == "user")
        title = _field(paper, "Title")
        if paper.startswith("Topics to score:"):
            slugs = [s.strip() for s in paper.splitlines()[0].split(":", 1)[1].split(",")]
            return {"papers": [
                {"id": m["id"], "scores": [{"topic": s, "score": self.score_for(m["title"], s),
                                            "reason_zh": f"与{s}相关程度的判断"} for s in slugs]}
                for m in _PAPER_RE.finditer(paper)]}
        page = paper.split("<<<", 1)[1].split(">>>", 1)[0] if "<<<" in paper else ""
        # "Author: affiliation; affiliation" (API) or one affiliation per line (PDF).
        parts = [p for line in page.splitlines() for p in line.split(":")[-1].split(";")]
        institutions = [{"name": p.strip(" ,*0123456789"), "name_zh": ""}
                        for p in parts if INSTITUTION_RE.search(p)]
        abstract = _field(paper, "Abstract")
        return {"title_zh": f"中文标题:{title}", "summary_zh": "本文提出一种新方法。",
                "summary_en": f"This paper studies {title}.",
                "abstract_zh": "中文翻译:" + "译" * (len(abstract) // 3),
                "institutions": institutions}


_PAPER_RE = re.compile(r"^\[\d+\] arXiv id: (?P<id>\S+)\nTitle: (?P<title>.*)$", re.MULTILINE)


def _prompt_text(body: dict[str, Any]) -> str:
    """The prompt as a cache sees it: the response format (a schema is part of the prefix),
    then each message's role and content in order."""
    parts = [json.dumps(body.get("response_format"), sort_keys=True)]
    parts += [f"{m.get('role')}\n{m.get('content') or ''}" for m in body.get("messages", [])]
    return "\n".join(parts)


def _format_problem(body: dict[str, Any]) -> str:
    """What OpenAI would reject in the request's response_format, or ""."""
    fmt = body.get("response_format")
    if fmt is None:
        return ""
    if fmt.get("type") == "json_object":
        said = " ".join(m.get("content") or "" for m in body.get("messages", []))
        if "json" not in said.lower():
            return ("'messages' must contain the word 'json' in some form, to use "
                    "'response_format' of type 'json_object'.")
        return ""
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return "" if spec.get("name") and isinstance(spec.get("schema"), dict) else (
            "Missing required parameter: 'response_format.json_schema.name' or '.schema'.")
    return f"Invalid value: {fmt.get('type')!r} for 'response_format.type'."


def _field(text: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
    return m.group(1) if m else ""
