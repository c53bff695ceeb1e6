"""The LLM client behind labels and the judge: one OpenAI-compatible chat client (OpenAI, vLLM, Ollama,
llama.cpp) with a disk cache, a token budget kept across runs, bounded concurrency and key redaction.

- Retries are the `openai` client's own (`max_retries`, `timeout`): it backs off on 408/409/429/5xx,
  timeouts and connection errors and honours Retry-After. What is left when they run out is mapped by
  exception type: problems no retry can fix (bad key, no access, unknown model, rejected request,
  exhausted quota, unreachable server) raise `LLMError` and stop the run; a request that still failed
  (5xx, 429, timeout) is a `failed` reply with its `kind`, and is retried by the next run.
- Disk cache: one JSON file per request (`<cache>/<sha256>.json`), written atomically as soon as a
  VALID answer arrives (the caller says what valid is), so a killed run resumes without re-sending
  anything, and a bad answer is asked again next time instead of sticking.
- Token budget: one ledger per cache folder (`<cache>/token_ledger.json`), so labels and judge that
  share a cache share the budget, and a rerun continues the count. Before a request is sent its
  worst case (prompt characters / 4 + max_tokens) is reserved; the reply's `usage` (or the same
  estimate when the server gives none) replaces the reservation. So the budget is overshot only by
  the estimate's error on the requests in flight, never by whole requests. Cached answers cost nothing.
- Concurrency: a thread pool (works inside Jupyter, whose event loop rules out asyncio.run).

The API key is read from OPENAI_API_KEY only; every string written to disk, logged or raised passes
through `redaction.redact` (the key, and credentials in the base URL or echoed by the server).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import artifacts, redaction
from .redaction import redact  # noqa: F401 (labeling re-exports it)

log = logging.getLogger(__name__)

LEDGER = "token_ledger.json"
RETRY_WAIT_MAX = 60.0  # seconds: the longest wait of the openai client between two attempts (a Retry-After)


class LLMError(RuntimeError):
    """A problem no retry can fix (bad key, unknown model, rejected request, no labels at all): the run stops."""


@dataclass
class LLMConfig:
    """How to talk to the LLM. The API key is not here on purpose: it comes from OPENAI_API_KEY only."""

    model: str
    base_url: str | None = None       # None: $OPENAI_BASE_URL, else the openai package default
    temperature: float = 0.0
    seed: int = 0                     # sent to the server (deterministic sampling where supported)
    max_tokens: int = 120
    concurrency: int = 16
    max_retries: int = 5              # the openai client's retries after the first try
    timeout: float = 30.0             # per attempt, seconds
    budget_tokens: int | None = None  # prompt + completion tokens for everything sharing the cache folder
    cache_dir: str | None = None      # cache + token ledger; None: <out_dir>/llm_cache. Share it to share the budget
    dry_run: bool = False             # write the prompts, send nothing
    json_mode: bool = True            # ask label requests for response_format=json_object
    time_limit: float = 3600.0        # seconds one step (all labels, or all judge requests) may take; requests
                                      # not sent by then fail as `time_limit` (a hanging server cost 6 x 30 s each)
    max_reply_chars: int = 4000       # a longer reply means the server ignores max_tokens: LLMError, nothing kept


@dataclass
class Reply:
    content: str | None
    status: str                      # ok | cached | failed | skipped_budget
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""
    kind: str = ""                   # why it failed: http_<code> | timeout | invalid_response | stopped | budget
                                     # | time_limit


def cache_key(cfg: LLMConfig, messages: list[dict], response_format: dict | None, max_tokens: int) -> str:
    """sha256 of everything that changes the answer (not the server address: same model, same answer)."""
    blob = json.dumps({"model": cfg.model, "messages": messages, "temperature": cfg.temperature, "seed": cfg.seed,
                       "max_tokens": max_tokens, "response_format": response_format},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def api_key() -> str | None:
    return os.environ.get("OPENAI_API_KEY") or None


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _prompt_text(messages: list[dict]) -> str:
    return "".join(str(m.get("content", "")) for m in messages)


class TokenLedger:
    """Tokens spent through one cache folder, kept on disk so that reruns continue the count.
    Thread-safe; the file is rewritten atomically after every answered request."""

    def __init__(self, path: Path, budget: int | None):
        self.path, self.budget = Path(path), budget
        self.lock = threading.Lock()
        data: dict = {}
        if self.path.exists():
            try:
                data = artifacts.read_json(self.path)
                int(data["tokens_spent"])
            except (ValueError, KeyError, TypeError) as e:
                raise LLMError(f"{self.path}: unreadable token ledger ({type(e).__name__}); delete it to "
                               "restart the count from zero") from None
        self.spent = int(data.get("tokens_spent", 0))
        self.requests = int(data.get("requests", 0))
        self.by_task: dict[str, int] = {k: int(v) for k, v in data.get("by_task", {}).items()}
        self.spent_before = self.spent
        self.reserved = 0

    def reserve(self, estimate: int) -> bool:
        """Hold `estimate` tokens for a request about to be sent; False when that would pass the budget."""
        with self.lock:
            if self.budget is not None and self.spent + self.reserved + estimate > self.budget:
                return False
            self.reserved += estimate
            return True

    def settle(self, estimate: int, used: int, task: str) -> None:
        """Replace a reservation by what the request really cost (0 when it failed) and save."""
        with self.lock:
            self.reserved -= estimate
            if used:
                self.spent += used
                self.requests += 1
                self.by_task[task] = self.by_task.get(task, 0) + used
                artifacts.write_json(self.path, {"tokens_spent": self.spent, "requests": self.requests,
                                                 "by_task": self.by_task, "budget_tokens": self.budget})

    def summary(self) -> dict:
        with self.lock:
            left = None if self.budget is None else max(0, self.budget - self.spent)
            return {"budget_tokens": self.budget, "tokens_spent_total": self.spent,
                    "tokens_spent_before": self.spent_before, "tokens_remaining": left,
                    "by_task": dict(self.by_task), "ledger": self.path.name}


class Requester:
    """Sends chat requests through one shared `openai.OpenAI` client (its own retries and timeout)."""

    def __init__(self, cfg: LLMConfig, out_dir: str | os.PathLike, task: str):
        import openai

        self.cfg, self.task = cfg, task
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(out_dir) / "llm_cache"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = TokenLedger(self.cache_dir / LEDGER, cfg.budget_tokens)
        self.client = openai.OpenAI(api_key=api_key(), base_url=cfg.base_url or os.environ.get("OPENAI_BASE_URL"),
                                    max_retries=cfg.max_retries, timeout=cfg.timeout)
        self.base_url = redaction.url(str(self.client.base_url))  # for messages and meta files: no user-info
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.deadline = time.monotonic() + cfg.time_limit
        self.tokens_used = 0
        self.n_sent = 0
        self._key_locks: dict[str, threading.Lock] = {}

    def _lock_for(self, key: str) -> threading.Lock:
        """One lock per cache key, so identical prompts in flight together are sent once."""
        with self.lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def close(self) -> None:
        self.client.close()

    def usage(self) -> dict:
        """What this requester sent, for the meta files."""
        return {"requests_sent": self.n_sent, "tokens_spent": self.tokens_used, "base_url": self.base_url,
                "budget": self.ledger.summary()}

    def complete(self, messages: list[dict], response_format: dict | None = None, max_tokens: int | None = None,
                 valid: Callable[[str | None], bool] | None = None) -> Reply:
        """One chat completion: from the cache if a valid answer is there, else sent (budget permitting).
        Only answers that pass `valid` are cached."""
        max_tokens = max_tokens or self.cfg.max_tokens
        key = cache_key(self.cfg, messages, response_format, max_tokens)
        with self._lock_for(key):
            return self._complete(key, messages, response_format, max_tokens, valid or (lambda c: c is not None))

    def _complete(self, key: str, messages: list[dict], response_format: dict | None, max_tokens: int,
                  valid: Callable[[str | None], bool]) -> Reply:
        import openai

        path = self.cache_dir / f"{key}.json"
        if path.exists():
            try:
                hit = artifacts.read_json(path)
                if valid(hit["content"]):        # caches from before this rule may hold bad answers
                    return Reply(hit["content"], "cached", hit["prompt_tokens"], hit["completion_tokens"])
            except (ValueError, KeyError):
                log.warning("ignoring unreadable cache file %s", path.name)
        if self.stop.is_set():
            return Reply(None, "failed", error="run stopped", kind="stopped")
        left = self.deadline - time.monotonic()
        if left <= 0:
            return Reply(None, "failed", error=f"time limit of {self.cfg.time_limit:g} s for this step reached "
                                               "(RECSAE_LLM_TIME_LIMIT)", kind="time_limit")
        estimate = estimate_tokens(_prompt_text(messages)) + max_tokens
        if not self.ledger.reserve(estimate):
            return Reply(None, "skipped_budget", error="token budget spent", kind="budget")
        kwargs = dict(model=self.cfg.model, messages=messages, temperature=self.cfg.temperature,
                      seed=self.cfg.seed, max_tokens=max_tokens)
        if response_format is not None:
            kwargs["response_format"] = response_format
        with self.lock:
            self.n_sent += 1
        err: Exception | None = None
        # the client's retries may take (attempts x timeout + its waits); with less time left, one attempt that
        # ends by the step's time limit
        worst = (self.cfg.max_retries + 1) * self.cfg.timeout + self.cfg.max_retries * RETRY_WAIT_MAX
        client = self.client if left >= worst else self.client.with_options(max_retries=0, timeout=left)
        try:  # the reply is read in here too: a 200 that is not a chat completion (an HTML page) is a failure
            resp = client.chat.completions.create(**kwargs)
            content = resp.choices[0].message.content if resp.choices else None
            usage, served = resp.usage, resp.model
            if content is not None and not isinstance(content, str):
                raise TypeError(f"message content is {type(content).__name__}, not text")
        except (openai.APIError, AttributeError, TypeError, IndexError, KeyError, ValueError) as e:
            err = e
        if err is not None:   # handled outside the except block: no chained exception holding the request
            self.ledger.settle(estimate, 0, self.task)
            return self._failure(err)

        if usage is not None and usage.prompt_tokens is not None:
            pt, ct = int(usage.prompt_tokens), int(usage.completion_tokens or 0)
        else:
            pt, ct = estimate_tokens(_prompt_text(messages)), estimate_tokens(content or "")
        with self.lock:
            self.tokens_used += pt + ct
        self.ledger.settle(estimate, pt + ct, self.task)   # ledger first: a kill in between over-counts, never under
        if content is not None and len(content) > self.cfg.max_reply_chars:
            self.stop.set()
            raise LLMError(f"the LLM server at {self.base_url} (model {self.cfg.model!r}) ignored max_tokens="
                           f"{max_tokens}: a reply of {len(content):,} characters (at most {self.cfg.max_reply_chars:,} "
                           "are accepted, LLMConfig.max_reply_chars). Stopped, so that the token budget is not spent "
                           "on such replies; the reply was not kept.")
        if valid(content):
            artifacts.write_json(path, {"request": kwargs, "content": content, "prompt_tokens": pt,
                                        "completion_tokens": ct, "served_model": served})
        return Reply(content, "ok", pt, ct)

    def _failure(self, err: Exception) -> Reply:
        """A failed reply (the next run retries it), or LLMError for what no retry can fix."""
        import openai

        where = f"the LLM server at {self.base_url} (model {self.cfg.model!r})"
        tries = f"{self.cfg.max_retries + 1} attempts"
        said = redact(str(getattr(err, "message", err)))[:300]
        fatal: str | None = None
        if isinstance(err, openai.APITimeoutError):
            return Reply(None, "failed", error=f"timeout after {self.cfg.timeout:g} s, {tries}", kind="timeout")
        if isinstance(err, openai.APIConnectionError):
            fatal = f"cannot reach {where} after {tries}: {redact(str(err))[:200]}"
        elif isinstance(err, openai.AuthenticationError):
            fatal = f"{where} rejected the API key (HTTP 401); check OPENAI_API_KEY. Server said: {said}"
        elif isinstance(err, openai.PermissionDeniedError):
            fatal = f"{where} refused access (HTTP 403); check the key's permissions. Server said: {said}"
        elif isinstance(err, openai.NotFoundError):
            fatal = (f"model {self.cfg.model!r} was not found at {self.base_url} (HTTP 404); check LLMConfig.model "
                     f"and base_url. Server said: {said}")
        elif isinstance(err, openai.RateLimitError) and getattr(err, "code", None) == "insufficient_quota":
            fatal = f"{where} says the account is out of quota (HTTP 429 insufficient_quota)."
        elif isinstance(err, (openai.BadRequestError, openai.UnprocessableEntityError)):
            hint = " If the server does not support response_format, set LLMConfig(json_mode=False)."
            fatal = f"{where} rejected the request (HTTP {err.status_code}).{hint} Server said: {said}"
        elif isinstance(err, openai.APIStatusError):   # 429, 5xx, 408, 409 after the client's retries
            return Reply(None, "failed", error=f"HTTP {err.status_code} after {tries}", kind=f"http_{err.status_code}")
        elif isinstance(err, openai.APIError):         # e.g. a body the client could not decode
            return Reply(None, "failed", error=f"invalid response: {said}", kind="invalid_response")
        else:                                          # a 200 whose body is not a chat completion (an HTML page)
            return Reply(None, "failed", error=f"invalid response: not a chat completion ({type(err).__name__}: "
                                               f"{said[:120]})", kind="invalid_response")
        self.stop.set()
        raise LLMError(fatal)


def run_all(fn: Callable[[Any], Any], items: list, cfg: LLMConfig, progress: bool, desc: str,
            req: Requester | None = None) -> list:
    """fn over items with at most cfg.concurrency in flight, results in input order. A fatal error
    stops the pool (queued work is cancelled, running requests finish) and is re-raised."""
    from tqdm import tqdm  # text bars: tqdm.auto warns in every kernel without ipywidgets

    out: list = [None] * len(items)
    with ThreadPoolExecutor(max_workers=max(1, cfg.concurrency)) as pool:
        futures = {pool.submit(fn, it): i for i, it in enumerate(items)}
        try:
            for fut in tqdm(as_completed(futures), total=len(futures), desc=desc, disable=not progress):
                out[futures[fut]] = fut.result()
        except BaseException:
            if req is not None:
                req.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return out
