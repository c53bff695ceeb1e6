"""labeling.py against a real OpenAI-compatible HTTP server (tests/llm_server.py): the real `openai`
client, real HTTP, real status codes. Nothing is mocked."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from recsae_utils import labeling, llm as llm_client
from recsae_utils.labeling import (LLMConfig, LLMError, build_judge_messages, build_label_messages, judge_latents,
                                   label_latents)

sys.path.insert(0, str(Path(__file__).parent))
from llm_server import GENRES, FakeLLM  # noqa: E402

KEY = "test-key-SECRET-7f3a9c1e5b"
MODEL = "test-model"


def make_card(latent: int, genre: str | None = None) -> dict:
    genre = genre or GENRES[latent % len(GENRES)]
    items = [{"item_id": 100 * latent + j, "title": f"Film {latent}-{j}", "year": 1990 + j, "genres": [genre],
              "count": 10 - j, "strength": 5.0 - j / 2, "lift": 2.5} for j in range(3)]
    items.append({"item_id": 7, "title": None, "year": None, "genres": [], "count": 1, "strength": 0.1, "lift": 0.4})
    return {"latent": latent, "n_fire": 40 + latent, "freq": 0.0123, "top_items": items,
            "genre_enrichment": [{"genre": genre, "odds_ratio": 4.2, "p_value": 1.5e-6}],
            "decade_enrichment": [{"decade": 1990, "odds_ratio": 1.8, "p_value": 0.003}],
            "popularity_pct": 61.4, "context": "",
            "examples": [{"history_titles": [f"Old {k}" for k in range(12)], "activation": 0.87}]}


def offline(card: dict) -> dict:
    return {"name": f"latent {card['latent']} by metadata", "description": "from genres"}


@pytest.fixture(scope="module")
def server():
    srv = FakeLLM(api_key=KEY, models=[MODEL]).start()
    yield srv
    srv.stop()


@pytest.fixture
def llm(server, monkeypatch):
    """A fresh script and the client environment pointing at the server."""
    server.reset()
    server.delay = 0.0
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    return server


def cfg(**kw) -> LLMConfig:
    kw.setdefault("concurrency", 4)
    return LLMConfig(model=MODEL, **kw)


def cached(cache: Path) -> list[Path]:
    """The answers in a cache folder (not its token ledger)."""
    return [p for p in cache.glob("*.json") if p.name != llm_client.LEDGER]


def assert_no_key(out_dir: Path, *objs) -> None:
    for p in Path(out_dir).rglob("*"):
        if p.is_file():
            assert KEY.encode() not in p.read_bytes(), p
    for o in objs:
        text = o.to_csv() if isinstance(o, pd.DataFrame) else str(o)
        assert KEY not in text


# --- prompts --------------------------------------------------------------------------------------

def test_label_prompt_has_fields():
    card = make_card(5, "Horror")
    msgs = build_label_messages(card)
    assert [m["role"] for m in msgs] == ["system", "user"] and "JSON" in msgs[0]["content"]
    user = msgs[1]["content"]
    for s in ["Latent 5", "Film 5-0", "1990", "Horror", "| 10 |", "5", "2.50", "OR 4.20", "1990s", "61",
              "item 7", "Old 11", "0.87"]:
        assert s in user, s
    assert "Old 2;" not in user                              # at most 9 history titles per example
    assert build_label_messages(card) == msgs                # deterministic
    assert "books" in build_label_messages(card, domain="books")[0]["content"]
    assert "of its top sequences contain" in user                          # a card without n_pool
    pooled = build_label_messages({**card, "n_pool": 1234})[1]["content"]
    assert "how many of the 1234 training sequences it fires on contain the item" in pooled


def test_judge_prompt_and_parsing():
    probe = {"latent": 1, "history_titles": [f"T{i}" for i in range(12)], "last_item": "Alien (1979) (Sci-Fi)",
             "activating": True}
    user = build_judge_messages({"name": "Space horror", "description": "Aliens."}, probe)[1]["content"]
    assert "Space horror" in user and "Recommended next: Alien (1979) (Sci-Fi)" in user
    assert "T3" in user and "T2\n" not in user
    scores = [labeling.parse_score(s) for s in ["7", " 10.", "Answer: 3", "11", "-2", "none", ""]]
    assert scores == [7, 10, 3, -1, -1, -1, -1]
    fenced = '```json\n{"name": "a b", "description": "c"}\n```'
    assert labeling.parse_label(fenced) == {"name": "a b", "description": "c"}
    long_name = labeling.parse_label('Sure: {"name": "one two three four five six seven eight nine"}')["name"]
    assert len(long_name.split()) == 8
    assert labeling.parse_label('{"name": "x", "description": "y"') is None


# --- labels against the server --------------------------------------------------------------------

def test_labels_then_cache(llm, tmp_path):
    cards = [make_card(i) for i in range(10)]
    df = label_latents(cards, cfg(), tmp_path, progress=False)
    assert list(df.columns[:7]) == ["latent", "name", "description", "labeler", "status", "prompt_tokens",
                                    "completion_tokens"]
    assert df["latent"].tolist() == list(range(10))
    assert df["name"].tolist() == [f"{GENRES[i]} movies" for i in range(10)]
    assert (df["status"] == "ok").all() and (df["labeler"] == f"openai:{MODEL}").all()
    assert (df["prompt_tokens"] > 100).all() and (df["completion_tokens"] > 0).all()
    body = llm.requests[0]
    assert body["temperature"] == 0.0 and body["seed"] == 0 and body["max_tokens"] == 120
    assert body["response_format"] == {"type": "json_object"}
    assert len(cached(tmp_path / "llm_cache")) == 10
    saved = pd.read_parquet(tmp_path / "labels.parquet")
    pd.testing.assert_frame_equal(saved, df)
    assert (tmp_path / "labels.csv").exists() and (tmp_path / "labels_meta.json").exists()

    n = llm.n_http
    again = label_latents(cards, cfg(), tmp_path, progress=False)
    assert llm.n_http == n                                  # zero requests the second time
    assert (again["status"] == "cached").all() and again["name"].tolist() == df["name"].tolist()
    assert again["prompt_tokens"].tolist() == df["prompt_tokens"].tolist()
    assert_no_key(tmp_path, df, again)


@pytest.mark.parametrize("status", [429, 500])
def test_retries_then_success(llm, tmp_path, status):
    """The openai client's own retries, waiting what the server's Retry-After says."""
    llm.fail_first, llm.fail_status, llm.retry_after = 3, status, 0.15
    t0 = time.perf_counter()
    df = label_latents([make_card(i) for i in range(3)], cfg(concurrency=1), tmp_path, progress=False)
    assert (df["status"] == "ok").all()
    assert llm.n_http == 6 and len(llm.requests) == 3
    assert time.perf_counter() - t0 >= 3 * 0.15


def test_retries_without_retry_after(llm, tmp_path):
    llm.fail_first, llm.retry_after = 1, None            # the client's own backoff (about 0.5 s)
    df = label_latents([make_card(0)], cfg(), tmp_path, progress=False)
    assert df["status"].tolist() == ["ok"] and llm.n_http == 2


def read_meta(path: Path) -> dict:
    return json.loads(path.read_text())


def test_retries_exhausted_marks_failed_and_rerun_retries(llm, tmp_path, caplog):
    llm.fail_first, llm.fail_status = 2, 503
    cards = [make_card(0), make_card(1)]
    with caplog.at_level(logging.WARNING, logger="recsae_utils.labeling"):
        df = label_latents(cards, cfg(concurrency=1, max_retries=1), tmp_path, progress=False)
    assert df["status"].tolist() == ["failed", "ok"]
    assert "HTTP 503" in df.loc[0, "error"]
    assert "1 of 2 labels failed (http_503: 1)" in caplog.text
    meta = read_meta(tmp_path / "labels_meta.json")
    assert (meta["n_failed"], meta["failures_by_kind"], meta["failed_latents"]) == (1, {"http_503": 1}, [0])
    assert meta["degraded"] and meta["unlabelled_latents"] == [0] and meta["n_unlabelled"] == 1
    llm.reset()                                         # a plain rerun asks again for the failed latent only
    again = label_latents(cards, cfg(concurrency=1, max_retries=1), tmp_path, progress=False)
    assert again["status"].tolist() == ["ok", "cached"] and len(llm.requests) == 1
    meta = read_meta(tmp_path / "labels_meta.json")
    assert meta["n_failed"] == 0 and not meta["degraded"] and meta["problems"] == []


def test_timeout_marks_failed(llm, tmp_path):
    llm.delay = 0.4
    with pytest.raises(LLMError, match=r"no latent got a label.*1 of 1 labels failed \(timeout: 1\)"):
        label_latents([make_card(0)], cfg(timeout=0.05, max_retries=1), tmp_path, progress=False)
    llm.wait_idle()
    df = pd.read_parquet(tmp_path / "labels.parquet")
    assert df.loc[0, "status"] == "failed" and "timeout after 0.05 s" in df.loc[0, "error"]
    assert llm.n_http == 2                              # the first try and one retry
    assert read_meta(tmp_path / "labels_meta.json")["failures_by_kind"] == {"timeout": 1}


def test_malformed_json_repair(llm, tmp_path):
    llm.malformed_once, llm.malformed_always = {1}, {2}
    df = label_latents([make_card(i) for i in range(4)], cfg(), tmp_path, progress=False)
    assert df["status"].tolist() == ["ok", "ok", "failed", "ok"]
    assert df.loc[1, "name"] == f"{GENRES[1]} movies"
    assert pd.isna(df.loc[2, "name"]) and "repair" in df.loc[2, "error"]
    assert len(llm.requests) == 6                           # 4 first answers + exactly one repair each for 1, 2
    repairs = [b for b in llm.requests if len(b["messages"]) == 4]
    assert len(repairs) == 2 and repairs[0]["messages"][2]["role"] == "assistant"
    assert df.loc[1, "prompt_tokens"] > df.loc[0, "prompt_tokens"]   # both calls counted
    assert read_meta(tmp_path / "labels_meta.json")["failures_by_kind"] == {"invalid_reply": 1}


def test_bad_answers_are_not_cached(llm, tmp_path):
    """A reply that is not a label never sticks: with every answer bad the run raises, and a rerun
    against a healthy server asks again for every latent (issue 15, case 4)."""
    cards = [make_card(i) for i in range(5)]
    llm.malformed_always = set(range(5))
    with pytest.raises(LLMError, match=r"no latent got a label.*5 of 5 labels failed \(invalid_reply: 5\)"):
        label_latents(cards, cfg(), tmp_path, progress=False)
    assert len(llm.requests) == 10                      # first answer + one repair each
    assert cached(tmp_path / "llm_cache") == []
    meta = read_meta(tmp_path / "labels_meta.json")     # the tables and meta are written before it raises
    assert meta["n_failed"] == 5 and meta["failed_latents"] == list(range(5)) and meta["degraded"]
    assert pd.read_parquet(tmp_path / "labels.parquet")["status"].eq("failed").all()
    llm.reset()
    df = label_latents(cards, cfg(), tmp_path, progress=False)
    assert (df["status"] == "ok").all() and len(llm.requests) == 5
    assert df["name"].tolist() == [f"{GENRES[i]} movies" for i in range(5)]


def test_old_cache_with_bad_answer_is_asked_again(llm, tmp_path):
    """Caches written before only valid answers were kept may hold a bad one: it is not trusted."""
    card = make_card(3)
    llm.malformed_always = {3}
    with pytest.raises(LLMError):
        label_latents([card], cfg(max_retries=0), tmp_path, progress=False)
    msgs = build_label_messages(card)
    key = labeling.cache_key(cfg(), msgs, {"type": "json_object"}, 120)
    (tmp_path / "llm_cache" / f"{key}.json").write_text(json.dumps(
        {"content": "not json", "prompt_tokens": 1, "completion_tokens": 1}))
    llm.reset()
    df = label_latents([card], cfg(), tmp_path, progress=False)
    assert df.loc[0, "status"] == "ok" and len(llm.requests) == 1


def test_bad_key_is_clear_and_secret(llm, tmp_path, monkeypatch):
    bad = "wrong-test-key-0000111122223333"
    monkeypatch.setenv("OPENAI_API_KEY", bad)
    with pytest.raises(LLMError, match="HTTP 401") as ei:
        label_latents([make_card(i) for i in range(20)], cfg(), tmp_path, progress=False)
    assert bad not in str(ei.value) and "OPENAI_API_KEY" in str(ei.value)
    assert ei.value.__cause__ is None and ei.value.__context__ is None
    assert llm.n_http <= 4                                  # stopped at once: at most the first wave, no retries
    for p in tmp_path.rglob("*"):
        assert not p.is_file() or bad.encode() not in p.read_bytes()


def test_unknown_model_is_clear(llm, tmp_path):
    with pytest.raises(LLMError, match=r"model 'gpt-nope' was not found.*HTTP 404"):
        label_latents([make_card(0)], LLMConfig(model="gpt-nope"), tmp_path, progress=False)
    assert llm.n_http == 1


def test_models_endpoint(llm):
    import openai

    with openai.OpenAI(max_retries=0) as client:
        assert [m.id for m in client.models.list()] == [MODEL]


def test_budget_stop(llm, tmp_path, caplog):
    cards = [make_card(i) for i in range(8)]
    one = label_latents(cards[:1], cfg(), tmp_path / "probe", progress=False)
    cost = int(one["prompt_tokens"][0] + one["completion_tokens"][0])
    llm.reset()
    budget = int(2.5 * cost)
    with caplog.at_level(logging.WARNING, logger="recsae_utils.labeling"):
        df = label_latents(cards, cfg(concurrency=1, budget_tokens=budget), tmp_path, progress=False)
    # each request reserves prompt/4 + max_tokens (120) before it is sent: the third would not fit
    assert df["status"].tolist() == ["ok"] * 2 + ["skipped_budget"] * 6
    assert len(llm.requests) == 2 and df.loc[2:, "name"].isna().all() and llm.tokens <= budget
    assert (tmp_path / "labels.parquet").exists()
    assert "token budget reached: 6 of 8 labels not sent" in caplog.text
    meta = read_meta(tmp_path / "labels_meta.json")
    assert meta["n_skipped_budget"] == 6 and meta["unlabelled_latents"] == list(range(2, 8)) and meta["degraded"]
    assert meta["budget"]["budget_tokens"] == budget and meta["budget"]["tokens_spent_total"] == llm.tokens
    llm.reset()                                         # a rerun continues the count: nothing more is sent
    with pytest.raises(LLMError, match="token budget reached"):
        label_latents(cards[2:], cfg(concurrency=1, budget_tokens=budget), tmp_path, progress=False)
    assert llm.n_http == 0


def _probes(n_latents: int, per_latent: int) -> list[dict]:
    return [{"latent": i, "history_titles": [f"H{j}" for j in range(5)], "activating": j % 2 == 0,
             "last_item": f"X{j} (1990) ({GENRES[(i + j) % len(GENRES)]})"}
            for i in range(n_latents) for j in range(per_latent)]


def _stage(cards, probes, c: LLMConfig, out: Path) -> None:
    """What the concept stage does: labels, then the judge, sharing one cache folder."""
    try:
        labels = label_latents(cards, c, out / "openai", progress=False)
    except LLMError:
        return
    judge_latents(labels, probes, c, out / "judge", progress=False)


def test_budget_kept_across_labels_judge_and_reruns(llm, tmp_path):
    """Issue 15, case 5: with 16 in flight, labels and judge (and a --force rerun) together stay within
    one budget, as counted by the server; cached answers cost nothing; a larger budget continues."""
    cards, probes = [make_card(i) for i in range(60)], _probes(60, 6)
    out = tmp_path / "labels"
    c = cfg(concurrency=16, budget_tokens=10_000, cache_dir=str(out / "llm_cache"))
    _stage(cards, probes, c, out)
    first = llm.tokens
    assert 9_000 < first <= 10_000
    labels_meta = read_meta(out / "openai" / "labels_meta.json")
    assert 0 < labels_meta["n_skipped_budget"] < 60
    assert labels_meta["n_unlabelled"] == len(labels_meta["unlabelled_latents"]) == labels_meta["n_skipped_budget"]
    ledger = read_meta(out / "llm_cache" / "token_ledger.json")
    assert ledger["tokens_spent"] == first and sum(ledger["by_task"].values()) == first
    if (out / "judge" / "judge_meta.json").exists():
        assert read_meta(out / "judge" / "judge_meta.json")["budget"]["tokens_spent_total"] == first

    llm.reset()                                         # the same run again (--force): the count continues
    _stage(cards, probes, c, out)
    second = llm.tokens
    assert first + second <= 10_000
    assert read_meta(out / "llm_cache" / "token_ledger.json")["tokens_spent"] == first + second

    llm.reset()                                         # a larger budget: cached answers are free, the rest is sent
    _stage(cards, probes, cfg(concurrency=16, budget_tokens=10**6, cache_dir=str(out / "llm_cache")), out)
    labels = pd.read_parquet(out / "openai" / "labels.parquet")
    assert labels["status"].isin(["ok", "cached"]).all()
    assert (labels["status"] == "cached").sum() >= 60 - labels_meta["n_skipped_budget"]
    label_requests = [b for b in llm.requests if "response_format" in b]
    assert len(label_requests) == (labels["status"] == "ok").sum()
    ledger = read_meta(out / "llm_cache" / "token_ledger.json")
    assert ledger["tokens_spent"] == first + second + llm.tokens and ledger["budget_tokens"] == 10**6
    judge = pd.read_parquet(out / "judge" / "judge_probes.parquet")
    assert judge["status"].isin(["ok", "cached"]).all() and len(judge) == len(probes)


def test_tokens_estimated_without_usage(llm, tmp_path):
    llm.omit_usage = True
    df = label_latents([make_card(0)], cfg(), tmp_path, progress=False)
    prompt = "".join(m["content"] for m in build_label_messages(make_card(0)))
    assert df.loc[0, "status"] == "ok" and df.loc[0, "prompt_tokens"] == len(prompt) // 4


def test_dry_run_sends_nothing(llm, tmp_path):
    cards = [make_card(i) for i in range(5)]
    df = label_latents(cards, cfg(dry_run=True), tmp_path, progress=False)
    assert llm.n_http == 0 and (df["status"] == "dry_run").all()
    lines = [json.loads(s) for s in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert [r["latent"] for r in lines] == list(range(5))
    assert lines[2]["messages"] == build_label_messages(cards[2])
    assert_no_key(tmp_path, df)


def test_offline_without_key(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="recsae_utils.labeling"):
        df = label_latents([make_card(i) for i in range(3)], cfg(), tmp_path, fallback=offline, progress=False)
    assert "OPENAI_API_KEY" in caplog.text
    assert (df["labeler"] == "offline-metadata").all() and df["name"].tolist()[1] == "latent 1 by metadata"
    df2 = label_latents([make_card(0)], cfg(), tmp_path, labeler="offline", fallback=offline, progress=False)
    assert df2.loc[0, "status"] == "ok" and not (tmp_path / "llm_cache").exists()


_CHILD = """
import json, sys
from recsae_utils.labeling import LLMConfig, label_latents
cards = json.load(open(sys.argv[1]))
label_latents(cards, LLMConfig(model=sys.argv[3], concurrency=2), sys.argv[2], progress=False)
"""


def test_resume_after_kill(llm, tmp_path):
    n = 40
    cards = [make_card(i) for i in range(n)]
    (tmp_path / "cards.json").write_text(json.dumps(cards))
    out = tmp_path / "out"
    cache = out / "llm_cache"
    llm.delay = 0.1
    env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm.base_url}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path / "cards.json"), str(out), MODEL], env=env)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and len(cached(cache)) < 8:
            assert child.poll() is None, "child ended early"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    time.sleep(0.05)
    llm.wait_idle()                                     # the dead child's last requests finish server-side
    done_before = {json.loads(p.read_text())["request"]["messages"][1]["content"].split(":")[0]
                   for p in cached(cache)}
    assert 8 <= len(done_before) < n and not (out / "labels.parquet").exists()

    llm.reset()
    llm.delay = 0.0
    df = label_latents(cards, cfg(), out, progress=False)
    assert df["status"].isin(["ok", "cached"]).all() and len(df) == n
    assert (df["status"] == "cached").sum() == len(done_before)
    resent = {b["messages"][1]["content"].split(":")[0] for b in llm.requests}
    assert not resent & done_before and len(llm.requests) == n - len(done_before)


# --- judge ----------------------------------------------------------------------------------------

def test_judge_known_scores(llm, tmp_path):
    labels = pd.DataFrame({"latent": [0, 1, 2], "name": ["Horror movies", "Comedy movies", None],
                           "description": ["Scary films.", "Funny films.", None]})

    def probe(latent, genre, act):
        return {"latent": latent, "history_titles": ["A", "B"], "last_item": f"X (1990) ({genre})", "activating": act}

    probes = ([probe(0, "Horror", True)] * 2 + [probe(0, "Drama", False), probe(0, "Horror", False)]   # 1, 0.5
              + [probe(1, "Comedy", True), probe(1, "War", True)] + [probe(1, "War", False)] * 3      # 0.5, 1
              + [probe(2, "Drama", True)])                                                            # no label
    df = judge_latents(labels, probes, cfg(), tmp_path, progress=False)
    assert df["latent"].tolist() == [0, 1]
    r0, r1 = df.iloc[0], df.iloc[1]
    assert (r0.recall, r0.specificity, r0.confidence, r0.n_pos, r0.n_neg) == (1.0, 0.5, 0.75, 2, 2)
    assert not r0.interpretable
    assert (r1.recall, r1.specificity, r1.confidence) == (0.5, 1.0, 0.8) and r1.interpretable
    assert len(llm.requests) == 4                    # identical prompts (the flag is not shown) are sent once
    assert all("response_format" not in b for b in llm.requests)
    assert (tmp_path / "judge.parquet").exists() and (tmp_path / "judge_probes.parquet").exists()
    n = llm.n_http
    judge_latents(labels, probes, cfg(), tmp_path, progress=False)
    assert llm.n_http == n
    assert_no_key(tmp_path, df)


def test_judge_failures_counted_and_retried(llm, tmp_path, caplog):
    labels = pd.DataFrame({"latent": [0, 1], "name": ["Horror movies", "Comedy movies"], "description": ["", ""]})
    probes = _probes(2, 4)
    llm.fail_first = 2                                  # two probes fail (no retries), the rest are answered
    with caplog.at_level(logging.WARNING, logger="recsae_utils.labeling"):
        judge_latents(labels, probes, cfg(concurrency=1, max_retries=0), tmp_path, progress=False)
    assert "judge: 2 of 8 judge requests failed (http_500: 2)" in caplog.text
    meta = read_meta(tmp_path / "judge_meta.json")
    assert (meta["n_failed"], meta["failures_by_kind"], meta["failed_latents"]) == (2, {"http_500": 2}, [0])
    assert meta["degraded"] and meta["n_unparsable"] == 0
    llm.reset()
    df = judge_latents(labels, probes, cfg(concurrency=1, max_retries=0), tmp_path, progress=False)
    assert len(llm.requests) == 2 and (df["n_pos"] + df["n_neg"]).tolist() == [4, 4]
    llm.reset()                                         # every request failing is an error, not an empty score
    llm.fail_first = 100
    with pytest.raises(LLMError, match=r"every judge request .* failed"):
        judge_latents(labels.assign(description="x"), probes, cfg(max_retries=0), tmp_path, progress=False)


def test_rejected_request_is_clear_and_not_retried(llm, tmp_path):
    llm.fail_first, llm.fail_status = 1, 400
    with pytest.raises(LLMError, match=r"rejected the request \(HTTP 400\).*json_mode=False") as ei:
        label_latents([make_card(0)], cfg(), tmp_path, progress=False)
    assert llm.base_url in str(ei.value) and KEY not in str(ei.value) and llm.n_http == 1


def test_judge_unparsable_counts_wrong():
    per = pd.DataFrame({"latent": [3] * 4, "activating": [True, True, False, False],
                        "prediction": [9.0, -1.0, -1.0, 5.0]})
    row = labeling.score_predictions(per).iloc[0]
    assert (row.recall, row.specificity, row.confidence) == (0.5, 0.5, 0.5)


def test_judge_dry_run_and_no_key(llm, tmp_path, monkeypatch):
    labels = pd.DataFrame({"latent": [0], "name": ["Horror movies"], "description": ["Scary."]})
    probes = [{"latent": 0, "history_titles": ["A"], "last_item": "B (Horror)", "activating": True}]
    df = judge_latents(labels, probes, cfg(dry_run=True), tmp_path, progress=False)
    assert llm.n_http == 0 and df.empty
    row = json.loads((tmp_path / "judge_prompts.jsonl").read_text())
    assert row["messages"] == build_judge_messages({"name": "Horror movies", "description": "Scary."}, probes[0])
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        judge_latents(labels, probes, cfg(), tmp_path, progress=False)


def test_unreachable_server_stops(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:                          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(LLMError, match="cannot reach"):
        label_latents([make_card(i) for i in range(50)], cfg(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1),
                      tmp_path, progress=False)


# --- issue 20: a 200 that is not a chat completion, a hanging server, overlong labels, credentials in the URL ---

def test_a_200_html_page_is_an_invalid_response_not_a_crash(llm, tmp_path):
    """The reply was read outside the error mapping: a 200 HTML page (a proxy's sign-in page) crashed
    labelling with "'str' object has no attribute 'choices'"."""
    llm.html = True
    with pytest.raises(LLMError, match=r"no latent got a label.*3 of 3 labels failed \(invalid_response: 3\)"):
        label_latents([make_card(i) for i in range(3)], cfg(max_retries=0), tmp_path, progress=False)
    meta = read_meta(tmp_path / "labels_meta.json")
    assert meta["failures_by_kind"] == {"invalid_response": 3} and cached(tmp_path / "llm_cache") == []
    assert "not a chat completion" in pd.read_parquet(tmp_path / "labels.parquet")["error"].iloc[0]
    llm.reset()                                          # a rerun against a healthy server labels them all
    assert (label_latents([make_card(i) for i in range(3)], cfg(), tmp_path, progress=False)["status"] == "ok").all()


def test_a_hanging_server_costs_at_most_the_time_limit(llm, tmp_path):
    """Each request waited 6 attempts x 30 s: 2,048 latents took hours before the stage failed. The step now
    ends by its time limit; what was not answered fails as time_limit (or timeout) and a rerun asks again."""
    llm.delay = 3.0
    t0 = time.time()
    with pytest.raises(LLMError, match=r"no latent got a label.*9 of 9 labels failed \((time_limit: 7, timeout: 2|"
                                       r"timeout: 2, time_limit: 7)\)"):
        label_latents([make_card(i) for i in range(9)], cfg(time_limit=1.0, concurrency=2), tmp_path, progress=False)
    assert time.time() - t0 < 2.5 and llm.n_http == 2


def test_an_overlong_label_is_refused_and_long_fields_are_cut(llm, tmp_path):
    """A 100 KB label was accepted: it spent 2.39M tokens of a 2M budget and filled a README row."""
    llm.reply_chars = 100_000
    with pytest.raises(LLMError, match=r"ignored max_tokens=120: a reply of 100,0\d\d characters"):
        label_latents([make_card(i) for i in range(6)], cfg(concurrency=1), tmp_path, progress=False)
    assert llm.n_http == 1 and cached(tmp_path / "llm_cache") == []
    lab = labeling.parse_label(json.dumps({"name": "W" * 300, "description": "d" * 5000}))
    assert len(lab["name"]) == labeling.MAX_NAME_CHARS and lab["name"].endswith(" [truncated]")
    assert len(lab["description"]) == labeling.MAX_DESCRIPTION_CHARS and lab["description"].endswith(" [truncated]")


def test_credentials_in_the_base_url_are_never_shown(llm, tmp_path, monkeypatch):
    """http://alice:S3CRETPASS@host: httpx sends the user-info as Basic auth, the server echoed it in its
    401, and the URL was printed in the error (and written to the reports)."""
    from recsae_utils import redaction

    url = llm.base_url.replace("http://", "http://alice:S3CRETPASS@")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(LLMError, match="HTTP 401") as ei:
        label_latents([make_card(0)], cfg(max_retries=0), tmp_path, progress=False)
    text = str(ei.value)
    assert "S3CRETPASS" not in text and "YWxpY2U6UzNDUkVUUEFTUw" not in text and "alice" not in text
    assert "<redacted>@127.0.0.1" in text and "Basic <redacted>" in text
    assert redaction.redact(f"GET {url} Authorization: Bearer abc.def-123 {KEY}") == \
        f"GET {redaction.url(url)} Authorization: Bearer <redacted> <redacted>"


# --- issue 23: the prompt carries both top lists and the output side; --limit; precision of LLM labels ---

_TITLES = ["Clerks", "Fargo", "Heat", "Big", "Tootsie", "Airplane!", "Arthur", "Ran", "Shine", "Glory"]


def rich_card(latent: int) -> dict:
    by_count = [{"item_id": 10 * latent + k + 1, "title": f"{t} ({1991 + k})", "year": 1991 + k,
                 "genres": ["Comedy"] if k < 7 else ["Drama"], "count": 30 - k, "strength": 3.0 - k / 10,
                 "pct": 60.0, "community": None} for k, t in enumerate(_TITLES)]
    promoted = [{"item_id": 999, "title": "Sunset Blvd. (1950)", "year": 1950, "genres": ["Drama", "Film-Noir"]}]
    return {**make_card(latent, "Comedy"), "top_by_count": by_count, "top_by_strength": by_count[::-1],
            "promoted": promoted}


def test_prompt_carries_counts_strengths_and_output_side_via_the_server(llm, tmp_path):
    df = label_latents([rich_card(0)], cfg(), tmp_path, progress=False)
    system, user = (m["content"] for m in next(r for r in llm.requests if "Clerks" in str(r["messages"]))["messages"])
    assert "short name" in system and "one sentence" in system
    by_count = user.index("by activation count")
    by_strength = user.index("by activation strength")
    out = user.index("Output side")
    assert by_count < by_strength < out
    assert "1. Clerks (1991) [Comedy], count 30" in user[by_count:by_strength]
    assert "1. Glory (2000) [Drama], count 21" in user[by_strength:out]
    assert "1. Sunset Blvd. (1950) [Drama, Film-Noir]" in user[out:]
    # the server names it "Comedy movies": 7 of the top 10 by count are comedies
    assert df.loc[0, "name"] == "Comedy movies" and df.loc[0, "precision"] == pytest.approx(0.7)


def test_limit_labels_n_latents_by_llm_and_the_rest_offline(llm, tmp_path):
    cards = [dict(rich_card(i), n_fire=100 - i) for i in range(5)]
    df = label_latents(cards, cfg(), tmp_path, progress=False, limit=2)
    asked = sorted(r["messages"][1]["content"].split(":")[0] for r in llm.requests if "Clerks" in str(r["messages"]))
    assert asked == ["Latent 0", "Latent 1"] and df["latent"].tolist() == list(range(5))   # the 2 most frequent
    assert df["labeler"].tolist() == [f"openai:{MODEL}"] * 2 + [labeling.OFFLINE_LABELER] * 3
    assert df["name"].iloc[2].startswith("Comedy (7/10)") and df["precision"].notna().all()
    meta = json.loads((tmp_path / "labels_meta.json").read_text())
    assert meta["limit"] == 2 and meta["labelers"] == {f"openai:{MODEL}": 2, labeling.OFFLINE_LABELER: 3}
    assert meta["llm_median_precision"] == pytest.approx(0.7)
    assert labeling.provenance(df) == (f"Labels: 3 by the offline labeler offline-shared (no LLM); 2 by the LLM {MODEL}. "
                                       "The original study's labels came from ChatGPT.")
