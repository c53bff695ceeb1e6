"""Concept labels for SAE latents, and the RecSAE simulation score that checks them (protocol.md §4).

Two steps, both through any OpenAI-compatible chat server (OpenAI, vLLM, Ollama, llama.cpp):
- `label_latents`: each latent card (top items, enrichments, examples; built by `concepts.py`) becomes
  a prompt; the LLM answers {"name", "description"}. Without an API key, or with labeler="offline",
  a metadata-only fallback names the latent instead.
- `judge_latents`: the LLM, given only a label, predicts the latent's activation (0-10) on held-out
  activating and random non-activating sequences; recall / specificity / confidence follow §4.3.

Both share one request function (`_Requester.complete`), which gives them:
- a disk cache, one JSON file per request (`<out_dir>/llm_cache/<sha256>.json`), written atomically as
  soon as the answer arrives, so a killed run resumes without re-sending anything already answered;
- retries with capped, jittered exponential backoff on 429 / 5xx / timeouts / connection errors, and
  an immediate `LLMError` for problems a retry cannot fix (bad key, unknown model, rejected request,
  exhausted quota). A request whose retries run out is marked failed, except when the server cannot be
  reached at all, which stops the run (every other request would wait out the same retries);
- bounded concurrency (a thread pool: works inside Jupyter, whose event loop rules out asyncio.run);
- a token budget: once the tokens spent reach `budget_tokens` nothing more is sent (requests already in
  flight, at most `concurrency` of them, still finish and count).

The API key is read from OPENAI_API_KEY only. It is never a parameter, and every string this module
writes to disk, logs or raises passes through `_redact`.

Status values of the returned tables:
  ok              answered now (or by the offline fallback; see the `labeler` column)
  cached          answered from the disk cache, nothing sent
  failed          bad JSON after one repair attempt, or retries exhausted (see `error`)
  skipped_budget  not sent: the token budget was spent
  dry_run         prompt written to prompts.jsonl, nothing sent
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from . import artifacts

log = logging.getLogger(__name__)

MAX_NAME_WORDS = 8
MAX_HISTORY = 9          # §4.2/4.3: at most 9 history items before the recommended one
LABEL_COLUMNS = ["latent", "name", "description", "labeler", "status", "prompt_tokens", "completion_tokens", "error"]
JUDGE_COLUMNS = ["latent", "recall", "specificity", "confidence", "interpretable", "n_pos", "n_neg"]
OFFLINE_LABELER = "offline-metadata"


class LLMError(RuntimeError):
    """A problem no retry can fix (bad key, unknown model, rejected request): the run stops."""


@dataclass
class LLMConfig:
    """How to talk to the LLM. The API key is not here on purpose: it comes from OPENAI_API_KEY only."""

    model: str
    base_url: str | None = None       # None: $OPENAI_BASE_URL, else the openai package default
    temperature: float = 0.0
    seed: int = 0                     # sent to the server and seeds the backoff jitter
    max_tokens: int = 120
    concurrency: int = 16
    max_retries: int = 5              # retries after the first try, on 429 / 5xx / timeouts / connection errors
    backoff_base: float = 0.5         # seconds; delay = min(cap, base * 2**attempt) * U(0.5, 1.5)
    backoff_cap: float = 30.0
    timeout: float = 30.0             # per request, seconds
    budget_tokens: int | None = None  # stop sending once prompt + completion tokens reach this
    dry_run: bool = False             # write the prompts, send nothing
    json_mode: bool = True            # ask label requests for response_format=json_object


# ---------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------

def _num(x: Any, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _item_row(rank: int, it: dict) -> str:
    title = it.get("title") or f"item {it.get('item_id')}"
    genres = ", ".join(it.get("genres") or []) or "-"
    return (f"{rank} | {title} | {it.get('year') or '-'} | {genres} | {it.get('count', '-')} | "
            f"{_num(it.get('strength'), '.3g')} | {_num(it.get('lift'), '.2f')}")


def build_label_messages(card: dict, domain: str = "movies", max_items: int = 20,
                         max_examples: int = 5) -> list[dict]:
    """Chat messages asking for {"name", "description"} of one latent. Deterministic text, so the
    cache key of a card never changes between runs."""
    system = (
        f"You help interpret a sequential recommender for {domain}. A sparse autoencoder splits the "
        "recommender's user representation into latents, and each latent should stand for one theme "
        f"that users' tastes share. You get the {domain} that most strongly activate one latent, with "
        "statistics, and must say which theme they have in common. Describe the shared theme (genre, era, "
        "audience, mood, franchise, popularity...), not the individual items; ignore items that do not fit. "
        "Answer with a JSON object only, with two keys: \"name\" (the concept, at most 8 words) and "
        "\"description\" (one sentence)."
    )
    lines = [f"Latent {card['latent']}: active in {card.get('n_fire', '-')} sequences "
             f"(frequency {_num(card.get('freq'), '.4f')})."]
    if card.get("popularity_pct") is not None:
        lines.append(f"Mean popularity percentile of its top {domain}: {card['popularity_pct']:.0f} "
                     "(100 = most popular).")
    items = (card.get("top_items") or [])[:max_items]
    if items:
        pool = (f"the {card['n_pool']} training sequences it fires on" if card.get("n_pool")
                else "its top sequences")
        lines += ["", f"Top {domain} (count = how many of {pool} contain the item, strength = summed "
                      "activation over them, lift = count relative to the item's base rate):",
                  "rank | title | year | genres | count | strength | lift"]
        lines += [_item_row(i + 1, it) for i, it in enumerate(items)]
    if card.get("genre_enrichment"):
        lines += ["", "Over-represented genres (odds ratio, p-value):"]
        lines += [f"- {g['genre']}: OR {g['odds_ratio']:.2f}, p={g['p_value']:.1e}"
                  for g in card["genre_enrichment"]]
    if card.get("decade_enrichment"):
        lines += ["", "Over-represented release decades (odds ratio, p-value):"]
        lines += [f"- {d['decade']}s: OR {d['odds_ratio']:.2f}, p={d['p_value']:.1e}"
                  for d in card["decade_enrichment"]]
    if card.get("context"):
        lines += ["", f"Context: {card['context']}"]
    examples = (card.get("examples") or [])[:max_examples]
    if examples:
        lines += ["", "Sequences on which it fires most (history, oldest first -> activation):"]
        lines += [f"- {'; '.join(ex['history_titles'][-MAX_HISTORY:])} -> {ex['activation']:.3g}" for ex in examples]
    lines += ["", 'Reply with the JSON object {"name": ..., "description": ...} and nothing else.']
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


def _repair_messages(messages: list[dict], bad: str) -> list[dict]:
    """The one follow-up we allow when an answer is not the JSON we asked for."""
    return messages + [
        {"role": "assistant", "content": bad},
        {"role": "user", "content": "That was not a valid JSON object. Reply again with only a JSON object "
                                    "with the string keys \"name\" and \"description\", and no other text."},
    ]


def build_judge_messages(label: dict | str, probe: dict, domain: str = "movies") -> list[dict]:
    """Chat messages asking the judge for the latent's activation (0-10) on the probe's last item,
    given only the label (RecSAE simulation, protocol.md §4.3)."""
    if isinstance(label, dict):
        label = f"{label.get('name') or ''}. {label.get('description') or ''}".strip(" .") + "."
    system = (
        f"You check explanations of latents in a sparse autoencoder that reads a recommender for {domain}. "
        "Given a latent's explanation and one user's history, predict how strongly the latent fires when the "
        "recommender suggests the final item, taking the history into account. Use 0 (does not fire) to 10 "
        "(fires at full strength); most items get 0. Reply with one integer and nothing else.\n\n"
        "Example. Explanation: Classic westerns with gunfighters. History: High Noon (1952); Rio Bravo (1959). "
        "Recommended next: The Searchers (1956). Answer: 9"
    )
    history = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(probe["history_titles"][-MAX_HISTORY:])) or "(empty)"
    user = (f"Explanation: {label}\n"
            f"History (oldest first):\n{history}\n"
            f"Recommended next: {probe['last_item']}\n"
            "How strongly does the latent fire on the recommended item? Answer with an integer from 0 to 10.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# ---------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------

def parse_label(content: str | None) -> dict | None:
    """{"name", "description"} from an answer, or None when it is not usable JSON.
    Tolerates code fences and text around one JSON object; trims names past 8 words."""
    if not content:
        return None
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", content.strip())
    candidates = [text]
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{"): text.rindex("}") + 1])
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("name"), str) and obj["name"].strip():
            desc = obj.get("description")
            return {"name": " ".join(obj["name"].split()[:MAX_NAME_WORDS]),
                    "description": desc.strip() if isinstance(desc, str) else ""}
    return None


def parse_score(content: str | None) -> float:
    """The first number in the judge's answer; anything unparsable or outside 0-10 is -1 (wrong)."""
    m = re.search(r"-?\d+(?:\.\d+)?", content or "")
    if not m:
        return -1.0
    x = float(m.group())
    return x if 0.0 <= x <= 10.0 else -1.0


# ---------------------------------------------------------------------------------------------------
# The one request function: cache, budget, retries
# ---------------------------------------------------------------------------------------------------

@dataclass
class Reply:
    content: str | None
    status: str                      # ok | cached | failed | skipped_budget
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


def cache_key(cfg: LLMConfig, messages: list[dict], response_format: dict | None, max_tokens: int) -> str:
    """sha256 of everything that changes the answer (not the server address: same model, same answer)."""
    blob = json.dumps({"model": cfg.model, "messages": messages, "temperature": cfg.temperature, "seed": cfg.seed,
                       "max_tokens": max_tokens, "response_format": response_format},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _api_key() -> str | None:
    return os.environ.get("OPENAI_API_KEY") or None


def _redact(text: str) -> str:
    """Remove the API key (if any) from text bound for a file, a log or an exception."""
    key = _api_key()
    return text.replace(key, "<redacted>") if key else text


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _Requester:
    """Sends chat requests through one shared `openai.OpenAI` client (its own retries off)."""

    def __init__(self, cfg: LLMConfig, out_dir: Path):
        import openai

        self.cfg = cfg
        self.cache_dir = Path(out_dir) / "llm_cache"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.client = openai.OpenAI(api_key=_api_key(), base_url=cfg.base_url or os.environ.get("OPENAI_BASE_URL"),
                                    max_retries=0, timeout=cfg.timeout)
        self.base_url = str(self.client.base_url)
        self.lock = threading.Lock()
        self.rng = random.Random(cfg.seed)
        self.stop = threading.Event()
        self.tokens_used = 0
        self.n_sent = 0
        self._key_locks: dict[str, threading.Lock] = {}

    def _lock_for(self, key: str) -> threading.Lock:
        """One lock per cache key, so identical prompts in flight together are sent once."""
        with self.lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def close(self) -> None:
        self.client.close()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        with self.lock:
            jitter = 0.5 + self.rng.random()
        delay = min(self.cfg.backoff_cap, self.cfg.backoff_base * 2 ** attempt) * jitter
        return min(self.cfg.backoff_cap, max(delay, retry_after or 0.0))

    def _fatal(self, err: Exception) -> LLMError | None:
        """The clear error for a non-retryable failure, or None when a retry may help."""
        import openai

        if not isinstance(err, openai.APIStatusError):
            return None
        code, said = err.status_code, _redact(str(err.message))[:300]
        where = f"the LLM server at {self.base_url}"
        if code == 401:
            return LLMError(f"{where} rejected the API key (HTTP 401); check OPENAI_API_KEY. Server said: {said}")
        if code == 403:
            return LLMError(f"{where} refused access (HTTP 403); check the key's permissions. Server said: {said}")
        if code == 404:
            return LLMError(f"model {self.cfg.model!r} was not found at {self.base_url} (HTTP 404); check "
                            f"LLMConfig.model and base_url. Server said: {said}")
        if code == 429 and getattr(err, "code", None) == "insufficient_quota":
            return LLMError(f"{where} says the account is out of quota (HTTP 429 insufficient_quota).")
        if code in (408, 409, 429) or code >= 500:
            return None
        hint = " If the server does not support response_format, set LLMConfig(json_mode=False)." if code == 400 else ""
        return LLMError(f"{where} rejected the request (HTTP {code}).{hint} Server said: {said}")

    def complete(self, messages: list[dict], response_format: dict | None = None,
                 max_tokens: int | None = None) -> Reply:
        """One chat completion: from the cache if there, else sent (budget permitting) with retries."""
        max_tokens = max_tokens or self.cfg.max_tokens
        key = cache_key(self.cfg, messages, response_format, max_tokens)
        with self._lock_for(key):
            return self._complete(key, messages, response_format, max_tokens)

    def _complete(self, key: str, messages: list[dict], response_format: dict | None, max_tokens: int) -> Reply:
        import openai

        path = self.cache_dir / f"{key}.json"
        if path.exists():
            try:
                hit = artifacts.read_json(path)
                return Reply(hit["content"], "cached", hit["prompt_tokens"], hit["completion_tokens"])
            except (ValueError, KeyError):
                log.warning("ignoring unreadable cache file %s", path.name)
        with self.lock:
            if self.cfg.budget_tokens is not None and self.tokens_used >= self.cfg.budget_tokens:
                return Reply(None, "skipped_budget")
        kwargs = dict(model=self.cfg.model, messages=messages, temperature=self.cfg.temperature,
                      seed=self.cfg.seed, max_tokens=max_tokens)
        if response_format is not None:
            kwargs["response_format"] = response_format
        last, unreachable = "", False
        for attempt in range(self.cfg.max_retries + 1):
            if self.stop.is_set():
                return Reply(None, "failed", error="run stopped")
            fatal, retry_after, unreachable = None, None, False
            try:
                with self.lock:
                    self.n_sent += 1
                resp = self.client.chat.completions.create(**kwargs)
                break
            except openai.APIStatusError as e:
                fatal = self._fatal(e)
                last = f"HTTP {e.status_code}"
                try:
                    retry_after = float(e.response.headers.get("retry-after", ""))
                except ValueError:
                    pass
            except openai.APITimeoutError:
                last = f"timeout after {self.cfg.timeout:g} s"
            except openai.APIConnectionError as e:
                last, unreachable = f"connection error: {_redact(str(e))[:200]}", True
            if fatal is not None:   # raised outside the except block: no chained exception holding the request
                self.stop.set()
                raise fatal
            if attempt < self.cfg.max_retries:
                log.debug("retrying after %s (attempt %d)", last, attempt + 1)
                self.stop.wait(self._backoff(attempt, retry_after))
        else:
            if unreachable:   # the server itself is gone: every other request would wait out the same retries
                self.stop.set()
                raise LLMError(f"cannot reach the LLM server at {self.base_url} after "
                               f"{self.cfg.max_retries + 1} attempts ({last}).")
            return Reply(None, "failed", error=f"{last}; gave up after {self.cfg.max_retries + 1} attempts")

        content = resp.choices[0].message.content if resp.choices else None
        usage = resp.usage
        if usage is not None and usage.prompt_tokens is not None:
            pt, ct = int(usage.prompt_tokens), int(usage.completion_tokens or 0)
        else:
            pt = _estimate_tokens("".join(str(m.get("content", "")) for m in messages))
            ct = _estimate_tokens(content or "")
        with self.lock:
            self.tokens_used += pt + ct
        artifacts.write_json(path, {"request": kwargs, "content": content, "prompt_tokens": pt,
                                    "completion_tokens": ct, "served_model": resp.model})
        return Reply(content, "ok", pt, ct)


def _run_all(fn: Callable[[Any], Any], items: list, cfg: LLMConfig, progress: bool, desc: str,
             req: _Requester | None = None) -> list:
    """fn over items with at most cfg.concurrency in flight, results in input order. A fatal error
    stops the pool (queued work is cancelled, running requests finish) and is re-raised."""
    from tqdm.auto import tqdm

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


def _write_prompts(path: Path, rows: list[dict]) -> None:
    artifacts.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _write_table(out_dir: Path, stem: str, df: pd.DataFrame) -> None:
    artifacts.write_parquet(out_dir / f"{stem}.parquet", df)
    artifacts.write_text(out_dir / f"{stem}.csv", _redact(df.to_csv(index=False)))


def _write_meta(out_dir: Path, stem: str, cfg: LLMConfig, df: pd.DataFrame, req: _Requester | None, **extra) -> None:
    """Provenance beside each table: config (no key in it), its hash, counts, tokens."""
    conf = asdict(cfg)
    meta = {"config": conf, "config_hash": artifacts.config_hash(conf),
            "status_counts": df["status"].value_counts().to_dict() if "status" in df else {},
            "requests_sent": req.n_sent if req else 0, "tokens_spent": req.tokens_used if req else 0,
            "base_url": req.base_url if req else None, **extra}
    artifacts.write_text(out_dir / f"{stem}_meta.json", _redact(artifacts.to_json(meta)))


# ---------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------

def _offline_rows(cards: list[dict], fallback: Callable[[dict], dict] | None) -> list[dict]:
    if fallback is None:
        from .cards import offline_label as fallback   # cards.py imports no labeling: no cycle
    rows = []
    for card in cards:
        lab = fallback(card)
        rows.append({"latent": int(card["latent"]), "name": lab.get("name"), "description": lab.get("description"),
                     "labeler": OFFLINE_LABELER, "status": "ok", "prompt_tokens": 0, "completion_tokens": 0,
                     "error": ""})
    return rows


def label_latents(cards: list[dict], cfg: LLMConfig, out_dir: str | os.PathLike, labeler: str = "openai",
                  fallback: Callable[[dict], dict] | None = None, domain: str = "movies",
                  progress: bool = True) -> pd.DataFrame:
    """Name every latent card. Returns one row per card (columns LABEL_COLUMNS) and writes
    labels.parquet / labels.csv / labels_meta.json to out_dir. See the module docstring for statuses."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if labeler not in ("openai", "offline"):
        raise ValueError(f"labeler must be 'openai' or 'offline', not {labeler!r}")
    if labeler == "openai" and not cfg.dry_run and _api_key() is None:
        log.warning("OPENAI_API_KEY is not set: labelling %d latents offline from metadata", len(cards))
        labeler = "offline"

    response_format = {"type": "json_object"} if cfg.json_mode else None
    req = None
    if labeler == "offline":
        rows = _offline_rows(cards, fallback)
    elif cfg.dry_run:
        rows, prompts = [], []
        for card in cards:
            msgs = build_label_messages(card, domain)
            prompts.append({"latent": int(card["latent"]), "messages": msgs,
                            "cache_key": cache_key(cfg, msgs, response_format, cfg.max_tokens)})
            rows.append({"latent": int(card["latent"]), "name": None, "description": None,
                         "labeler": f"openai:{cfg.model}", "status": "dry_run", "prompt_tokens": 0,
                         "completion_tokens": 0, "error": ""})
        _write_prompts(out_dir / "prompts.jsonl", prompts)
    else:
        req = _Requester(cfg, out_dir)

        def one(card: dict) -> dict:
            msgs = build_label_messages(card, domain)
            r = req.complete(msgs, response_format)
            lab, replies = parse_label(r.content), [r]
            if lab is None and r.status in ("ok", "cached"):      # one repair attempt, then give up
                r = req.complete(_repair_messages(msgs, r.content or ""), response_format)
                lab = parse_label(r.content)
                replies.append(r)
            if lab is not None:
                status, error = ("cached" if all(x.status == "cached" for x in replies) else "ok"), ""
            elif r.status in ("failed", "skipped_budget"):
                status, error = r.status, r.error
            else:
                status, error = "failed", "no valid JSON after one repair attempt"
            return {"latent": int(card["latent"]), "name": lab and lab["name"],
                    "description": lab and lab["description"], "labeler": f"openai:{cfg.model}",
                    "status": status, "prompt_tokens": sum(x.prompt_tokens for x in replies),
                    "completion_tokens": sum(x.completion_tokens for x in replies), "error": error}

        try:
            rows = _run_all(one, cards, cfg, progress, "labels", req)
        finally:
            req.close()
    df = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    df[["prompt_tokens", "completion_tokens"]] = df[["prompt_tokens", "completion_tokens"]].astype("int64")
    _write_table(out_dir, "labels", df)
    _write_meta(out_dir, "labels", cfg, df, req, labeler=labeler, domain=domain)
    return df


# ---------------------------------------------------------------------------------------------------
# Simulation score (LLM as judge)
# ---------------------------------------------------------------------------------------------------

def score_predictions(per_probe: pd.DataFrame) -> pd.DataFrame:
    """§4.3 scores per latent from (latent, activating, prediction): recall = activating predicted > 5,
    specificity = non-activating predicted <= 5, confidence = accuracy over both, interpretable at >= 0.8.
    A prediction of -1 (unparsable / out of range) is wrong on both sides."""
    rows = []
    for latent, g in per_probe.groupby("latent", sort=True):
        pos, neg = g[g["activating"]], g[~g["activating"]]
        hit_pos = (pos["prediction"] > 5).sum()
        hit_neg = ((neg["prediction"] >= 0) & (neg["prediction"] <= 5)).sum()
        n = len(pos) + len(neg)
        conf = (hit_pos + hit_neg) / n if n else float("nan")
        rows.append({"latent": int(latent), "recall": hit_pos / len(pos) if len(pos) else float("nan"),
                     "specificity": hit_neg / len(neg) if len(neg) else float("nan"), "confidence": conf,
                     "interpretable": bool(n and conf >= 0.8), "n_pos": len(pos), "n_neg": len(neg)})
    return pd.DataFrame(rows, columns=JUDGE_COLUMNS)


def judge_latents(labels_df: pd.DataFrame, probes: list[dict], cfg: LLMConfig, out_dir: str | os.PathLike,
                  domain: str = "movies", progress: bool = True) -> pd.DataFrame:
    """Simulation score of each labelled latent (columns JUDGE_COLUMNS). Probes of latents without a
    usable label are ignored; probes whose request failed or was skipped by the budget are left out of
    the counts (n_pos / n_neg say how many were scored). Writes judge.parquet / judge.csv,
    judge_probes.parquet (one row per probe) and judge_meta.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    named = labels_df[labels_df["name"].notna() & (labels_df["name"].astype(str) != "")]
    labels = {int(r.latent): {"name": r.name, "description": r.description} for r in named.itertuples()}
    todo = [p for p in probes if int(p["latent"]) in labels]
    msgs = [build_judge_messages(labels[int(p["latent"])], p, domain) for p in todo]

    req = None
    if cfg.dry_run:
        _write_prompts(out_dir / "judge_prompts.jsonl",
                       [{"latent": int(p["latent"]), "activating": bool(p["activating"]), "messages": m,
                         "cache_key": cache_key(cfg, m, None, cfg.max_tokens)} for p, m in zip(todo, msgs)])
        replies = [Reply(None, "dry_run") for _ in todo]
    else:
        if _api_key() is None:
            raise LLMError("OPENAI_API_KEY is not set; the judge needs an LLM (or use LLMConfig(dry_run=True)).")
        req = _Requester(cfg, out_dir)
        try:
            replies = _run_all(lambda m: req.complete(m), msgs, cfg, progress, "judge", req)
        finally:
            req.close()

    per_probe = pd.DataFrame({
        "latent": [int(p["latent"]) for p in todo], "activating": [bool(p["activating"]) for p in todo],
        "answer": [r.content for r in replies], "prediction": [parse_score(r.content) for r in replies],
        "status": [r.status for r in replies], "prompt_tokens": [r.prompt_tokens for r in replies],
        "completion_tokens": [r.completion_tokens for r in replies]})
    artifacts.write_parquet(out_dir / "judge_probes.parquet", per_probe)
    scored = per_probe[per_probe["status"].isin(["ok", "cached"])]
    df = score_predictions(scored)
    _write_table(out_dir, "judge", df)
    _write_meta(out_dir, "judge", cfg, per_probe, req, domain=domain)
    return df
