"""Concept labels for SAE latents, and the RecSAE simulation score that checks them (docs/protocol.md).

Two steps, both through the LLM client in `llm.py` (cache, token budget, retries, concurrency):
- `label_latents`: each latent card (top items by count, by strength and by lift, enrichments, the output
  side, examples; built by `cards.py`) becomes a prompt; the LLM answers {"name", "description"} (a short
  name and one sentence). Without an API key, or with labeler="offline", the offline labeler
  (`naming.shared_label`: what the top items share) names the latent instead; with `limit` N > 0 the LLM
  names only the N most frequent specific latents and the rest keep offline labels.
- every label, whoever made it, gets its precision (`naming`: the share of the latent's top-10 items by
  activation count that carry what the label names), the `precision` column.
- `judge_latents`: the LLM, given only a label, predicts the latent's activation (0-10) on held-out
  activating and random non-activating sequences; recall / specificity / confidence follow §4.3.

Only valid answers are cached, so a rerun asks again for every latent that failed. Failed and
budget-skipped requests are counted in `<stem>_meta.json` (n_failed, failures_by_kind, ...,
degraded, problems) and each problem is logged as a warning; a label run in which no latent got a
label raises `LLMError`.

Status values of the returned tables:
  ok              answered now (or by the offline fallback; see the `labeler` column)
  cached          answered from the disk cache, nothing sent
  failed          bad JSON after one repair attempt, or the request failed after the client's retries
  skipped_budget  not sent: the token budget was spent
  dry_run         prompt written to prompts.jsonl, nothing sent
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from . import artifacts
from .naming import OFFLINE_SHARED, Vocabulary, label_precision_rows, shared_label
from .llm import LLMConfig, LLMError, Reply, Requester, api_key, cache_key, redact, run_all  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

MAX_NAME_WORDS = 8
MAX_NAME_CHARS = 80            # a label longer than these is cut, with TRUNCATED at the end
MAX_DESCRIPTION_CHARS = 400
TRUNCATED = " [truncated]"
MAX_HISTORY = 9          # §4.2/4.3: at most 9 history items before the recommended one
LABEL_COLUMNS = ["latent", "name", "description", "labeler", "status", "prompt_tokens", "completion_tokens", "error",
                 "precision"]
JUDGE_COLUMNS = ["latent", "recall", "specificity", "confidence", "interpretable", "n_pos", "n_neg"]
OFFLINE_LABELER = OFFLINE_SHARED     # the default offline labeler (what the top items share)
ENRICHMENT_LABELER = "offline-metadata"   # the enrichment labeler (`cards.offline_label`), as a `fallback`
PROMPT_TOP = 10                           # items per list (by count, by strength, promoted) in a prompt


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


def _short_rows(items: list[dict]) -> list[str]:
    """'title (year) [genres]' lines; a co-purchase community where the dataset has one."""
    out = []
    for i, it in enumerate(items, 1):
        title = it.get("title") or f"item {it.get('item_id')}"
        year = f" ({it['year']})" if it.get("year") and not str(title).rstrip().endswith(")") else ""
        genres = ", ".join(it.get("genres") or [])
        comm = f" co-purchase group {it['community']}" if it.get("community") is not None else ""
        extra = f", count {it['count']}" if "count" in it else ""
        out.append(f"{i}. {title}{year} [{genres or '-'}]{comm}{extra}")
    return out


def build_label_messages(card: dict, domain: str = "movies", max_items: int = 20,
                         max_examples: int = 5) -> list[dict]:
    """Chat messages asking for {"name", "description"} of one latent. Deterministic text, so the
    cache key of a card never changes between runs."""
    system = (
        f"You help interpret a sequential recommender for {domain}. A sparse autoencoder splits the "
        "recommender's user representation into latents, and each latent should stand for one theme "
        f"that users' tastes share. You get the {domain} that most strongly activate one latent, with "
        "statistics, and must say which theme they have in common. Describe the shared theme (genre, era, "
        "audience, mood, franchise or series, popularity...), not the individual items; ignore items that do not fit, "
        "and name only what most of the top items by count really share. "
        "Answer with a JSON object only, with two keys: \"name\" (a short name of the concept, at most 8 words) and "
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
        lines += ["", f"Top {domain} ranked by lift (count = how many of {pool} contain the item, strength = summed "
                      "activation over them, lift = count relative to the item's base rate):",
                  "rank | title | year | genres | count | strength | lift"]
        lines += [_item_row(i + 1, it) for i, it in enumerate(items)]
    for key, what in (("top_by_count", "by activation count (how many of its sequences hold the item)"),
                      ("top_by_strength", "by activation strength (summed activation over those sequences)")):
        if card.get(key):
            lines += ["", f"Top {domain} {what}, with year and genres:"] + _short_rows(card[key][:PROMPT_TOP])
    if card.get("promoted"):
        lines += ["", f"Output side: the {domain} its decoder direction promotes most in the recommender's scores:"]
        lines += _short_rows(card["promoted"][:PROMPT_TOP])
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
    given only the label (RecSAE simulation, docs/protocol.md)."""
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
    Tolerates code fences and text around one JSON object; trims names past 8 words and cuts names and
    descriptions past MAX_NAME_CHARS / MAX_DESCRIPTION_CHARS, marked " [truncated]"."""
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
            return {"name": _shorten(" ".join(obj["name"].split()[:MAX_NAME_WORDS]), MAX_NAME_CHARS),
                    "description": _shorten(desc.strip(), MAX_DESCRIPTION_CHARS) if isinstance(desc, str) else ""}
    return None


def _shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the cut marked: a label is a table cell, not a page."""
    return text if len(text) <= limit else text[:limit - len(TRUNCATED)].rstrip() + TRUNCATED


def parse_score(content: str | None) -> float:
    """The first number in the judge's answer; anything unparsable or outside 0-10 is -1 (wrong)."""
    m = re.search(r"-?\d+(?:\.\d+)?", content or "")
    if not m:
        return -1.0
    x = float(m.group())
    return x if 0.0 <= x <= 10.0 else -1.0


# ---------------------------------------------------------------------------------------------------
# Tables and provenance
# ---------------------------------------------------------------------------------------------------

def _write_prompts(path: Path, rows: list[dict]) -> None:
    artifacts.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _write_table(out_dir: Path, stem: str, df: pd.DataFrame) -> None:
    artifacts.write_parquet(out_dir / f"{stem}.parquet", df)
    artifacts.write_text(out_dir / f"{stem}.csv", redact(df.to_csv(index=False)))


def _failures(status: pd.Series, kinds: list[str], latents: pd.Series, what: str, budget: dict | None) -> dict:
    """How many requests failed (and why) or were skipped by the budget, with the sentences that say so:
    the keys that a degraded run adds to the meta file and the summary."""
    failed, skipped = (status == "failed").to_numpy(), (status == "skipped_budget").to_numpy()
    by_kind = dict(sorted(Counter(k for k, f in zip(kinds, failed) if f).items()))
    n, problems = len(status), []
    if failed.any():
        why = ", ".join(f"{k}: {v}" for k, v in by_kind.items())
        problems.append(f"{failed.sum()} of {n} {what} failed ({why}); a rerun asks again for each of them")
    if skipped.any():
        b = budget or {}
        problems.append(f"token budget reached: {skipped.sum()} of {n} {what} not sent (spent "
                        f"{b.get('tokens_spent_total')} of {b.get('budget_tokens')} tokens, ledger "
                        f"{b.get('ledger')}); raise the budget and rerun to continue")
    return {"n_failed": int(failed.sum()), "failures_by_kind": by_kind,
            "failed_latents": sorted({int(x) for x in latents[failed]}),
            "n_skipped_budget": int(skipped.sum()),
            "skipped_budget_latents": sorted({int(x) for x in latents[skipped]}),
            "degraded": bool(problems), "problems": problems}


def _write_meta(out_dir: Path, stem: str, cfg: LLMConfig, df: pd.DataFrame, req: Requester | None, **extra) -> dict:
    """Provenance beside each table: config (no key in it), its hash, counts, tokens, budget, failures."""
    conf = asdict(cfg)
    usage = req.usage() if req else {"requests_sent": 0, "tokens_spent": 0, "base_url": None, "budget": None}
    meta = {"config": conf, "config_hash": artifacts.config_hash(conf),
            "status_counts": df["status"].value_counts().to_dict() if "status" in df else {}, **usage, **extra}
    artifacts.write_text(out_dir / f"{stem}_meta.json", redact(artifacts.to_json(meta)))
    return meta


# ---------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------

def default_vocabulary(cards: list[dict]) -> Vocabulary:
    """A vocabulary without base shares (every shared genre or decade may be named) for cards labelled without
    their dictionary; `naming.vocabulary_of(d)` is the real one."""
    return Vocabulary({}, any(it.get("title") for c in cards for it in c.get("top_by_count") or c.get("top_items") or []))


def _offline_rows(cards: list[dict], fallback: Callable[[dict], dict] | None, vocab: Vocabulary) -> list[dict]:
    """Offline labels: `naming.shared_label` (labeler OFFLINE_SHARED), or `fallback` (labeler
    ENRICHMENT_LABELER, e.g. `cards.offline_label`)."""
    rows = []
    for card in cards:
        lab = fallback(card) if fallback is not None else shared_label(card, vocab)
        rows.append({"latent": int(card["latent"]), "name": lab.get("name"), "description": lab.get("description"),
                     "labeler": ENRICHMENT_LABELER if fallback is not None else OFFLINE_LABELER, "status": "ok",
                     "prompt_tokens": 0, "completion_tokens": 0, "error": "",
                     "_label": lab if "parts" in lab else lab.get("name")})
    return rows


def limit_cards(cards: list[dict], limit: int, generic_freq: float = 0.10) -> tuple[list[dict], list[dict]]:
    """(the `limit` cards an LLM labels, the rest): the most frequent specific latents (firing frequency at
    most `generic_freq`), ties by latent id; limit <= 0 keeps every card."""
    if limit <= 0 or limit >= len(cards):
        return list(cards), []
    order = sorted(cards, key=lambda c: (float(c.get("freq", 0.0)) > generic_freq, -int(c.get("n_fire", 0)),
                                         int(c["latent"])))
    keep = {int(c["latent"]) for c in order[:limit]}
    return [c for c in cards if int(c["latent"]) in keep], [c for c in cards if int(c["latent"]) not in keep]


def with_precision(df: pd.DataFrame, cards: list[dict], rows: list[dict], vocab: Vocabulary) -> pd.DataFrame:
    """The labels table with each label's precision (`naming.label_precision_rows`; NaN where it names
    nothing the vocabulary can check or has no name)."""
    labels = {int(r["latent"]): r.get("_label", r.get("name")) for r in rows if r.get("name")}
    prec = {r["latent"]: r["precision"] for r in label_precision_rows(cards, labels, vocab)}
    return df.assign(precision=[prec.get(int(j), float("nan")) for j in df["latent"]])


def _is_label(content: str | None) -> bool:
    return parse_label(content) is not None


def label_latents(cards: list[dict], cfg: LLMConfig, out_dir: str | os.PathLike, labeler: str = "openai",
                  fallback: Callable[[dict], dict] | None = None, domain: str = "movies",
                  progress: bool = True, vocab: Vocabulary | None = None, limit: int = 0) -> pd.DataFrame:
    """Name every latent card. Returns one row per card (columns LABEL_COLUMNS) and writes
    labels.parquet / labels.csv / labels_meta.json to out_dir. See the module docstring for statuses.
    `vocab` (`naming.vocabulary_of`) decides what the offline labeler may name and checks every label's
    precision; `limit` > 0 sends only that many cards to the LLM (`limit_cards`), the rest are offline.
    Failed or budget-skipped labels are logged as warnings and counted in labels_meta.json; when no
    card got a label from the LLM, LLMError says why (after the tables are written)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if labeler not in ("openai", "offline"):
        raise ValueError(f"labeler must be 'openai' or 'offline', not {labeler!r}")
    if labeler == "openai" and not cfg.dry_run and api_key() is None:
        log.warning("OPENAI_API_KEY is not set: labelling %d latents offline from metadata", len(cards))
        labeler = "offline"

    response_format = {"type": "json_object"} if cfg.json_mode else None
    vocab = vocab if vocab is not None else default_vocabulary(cards)
    all_cards, req, rest = cards, None, []
    if labeler == "openai":
        cards, rest = limit_cards(cards, limit)
    if labeler == "offline":
        rows = _offline_rows(cards, fallback, vocab)
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
        req = Requester(cfg, out_dir, "labels")

        def one(card: dict) -> dict:
            msgs = build_label_messages(card, domain)
            r = req.complete(msgs, response_format, valid=_is_label)
            lab, replies = parse_label(r.content), [r]
            if lab is None and r.status == "ok":      # one repair attempt, then give up
                r = req.complete(_repair_messages(msgs, r.content or ""), response_format, valid=_is_label)
                lab = parse_label(r.content)
                replies.append(r)
            if lab is not None:
                status, error, kind = ("cached" if all(x.status == "cached" for x in replies) else "ok"), "", ""
            elif r.status in ("failed", "skipped_budget"):
                status, error, kind = r.status, r.error, r.kind
            else:
                status, error, kind = "failed", "no valid JSON after one repair attempt", "invalid_reply"
            return {"latent": int(card["latent"]), "name": lab and lab["name"],
                    "description": lab and lab["description"], "labeler": f"openai:{cfg.model}",
                    "status": status, "prompt_tokens": sum(x.prompt_tokens for x in replies),
                    "completion_tokens": sum(x.completion_tokens for x in replies), "error": error, "kind": kind}

        try:
            rows = run_all(one, cards, cfg, progress, "labels", req)
        finally:
            req.close()
    rows = rows + _offline_rows(rest, fallback, vocab)
    order = {int(c["latent"]): k for k, c in enumerate(all_cards)}
    rows.sort(key=lambda r: order[r["latent"]])
    df = pd.DataFrame(rows, columns=LABEL_COLUMNS[:-1])
    df[["prompt_tokens", "completion_tokens"]] = df[["prompt_tokens", "completion_tokens"]].astype("int64")
    df = with_precision(df, all_cards, rows, vocab)
    _write_table(out_dir, "labels", df)
    report = _failures(df["status"], [r.get("kind", "") for r in rows], df["latent"], "labels",
                       req.ledger.summary() if req else None)
    unlabelled = sorted(set(report["failed_latents"]) | set(report["skipped_budget_latents"]))
    llm_rows = df[df["labeler"].str.startswith("openai:")]
    _write_meta(out_dir, "labels", cfg, df, req, labeler=labeler, domain=domain, **report,
                n_unlabelled=len(unlabelled), unlabelled_latents=unlabelled, limit=int(limit),
                labelers=df["labeler"].value_counts().to_dict(), vocabulary_note=vocab.note,
                llm_median_precision=float(llm_rows["precision"].median()) if llm_rows["precision"].notna().any() else None)
    for problem in report["problems"]:
        log.warning("labels: %s", problem)
    if req is not None and len(llm_rows) and llm_rows["name"].isna().all():
        raise LLMError(f"no latent got a label from the LLM server at {req.base_url} (model {cfg.model!r}): "
                       + "; ".join(report["problems"]) + f". Details: {out_dir / 'labels_meta.json'}")
    return df


def provenance(labels_df: pd.DataFrame) -> str:
    """One sentence for reports: who made these labels (with counts), and that the original study's came from
    ChatGPT."""
    def by(k: str) -> str:
        return f"the LLM {k[len('openai:'):]}" if k.startswith("openai:") else f"the offline labeler {k} (no LLM)"

    who = "; ".join(f"{n:,} by {by(str(k))}" for k, n in labels_df["labeler"].value_counts().items())
    return f"Labels: {who}. The original study's labels came from ChatGPT."


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


def _is_score(content: str | None) -> bool:
    return parse_score(content) >= 0


def judge_latents(labels_df: pd.DataFrame, probes: list[dict], cfg: LLMConfig, out_dir: str | os.PathLike,
                  domain: str = "movies", progress: bool = True) -> pd.DataFrame:
    """Simulation score of each labelled latent (columns JUDGE_COLUMNS). Probes of latents without a
    usable label are ignored; probes whose request failed or was skipped by the budget are left out of
    the counts (n_pos / n_neg say how many were scored; judge_meta.json how many were left out and why).
    An unparsable answer is scored as wrong (§4.3) but not cached. Writes judge.parquet / judge.csv,
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
        if api_key() is None:
            raise LLMError("OPENAI_API_KEY is not set; the judge needs an LLM (or use LLMConfig(dry_run=True)).")
        req = Requester(cfg, out_dir, "judge")
        try:
            replies = run_all(lambda m: req.complete(m, valid=_is_score), msgs, cfg, progress, "judge", req)
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
    report = _failures(per_probe["status"], [r.kind for r in replies], per_probe["latent"], "judge requests",
                       req.ledger.summary() if req else None)
    _write_meta(out_dir, "judge", cfg, per_probe, req, domain=domain, **report,
                n_unparsable=int((scored["prediction"] < 0).sum()))
    for problem in report["problems"]:
        log.warning("judge: %s", problem)
    if req is not None and report["n_failed"] and report["n_failed"] == len(per_probe):
        raise LLMError(f"every judge request to {req.base_url} (model {cfg.model!r}) failed: "
                       + "; ".join(report["problems"]) + f". Details: {out_dir / 'judge_meta.json'}")
    return df
