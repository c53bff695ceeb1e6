"""The HTML concept browser: the data it embeds, its escaping, its size at 2,048 latents, its package-data
files, and the page itself driven in headless Chromium over the Chrome DevTools protocol (real input
events, clicks): the gzip payload decoded in the page, ML-1M and Grocery wording, look-up by item id,
and profiles in the main pane.

Chromium: /usr/bin/chromium (or `chromium` on PATH). When it is missing and we run as root, the session
fixture tries `apt-get install -y chromium` once (set RECSAE_NO_APT=1 to forbid that); otherwise the
browser tests skip with the reason. A screenshot goes to <repo>/test-artifacts/browser.png."""
from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest

from recsae_utils import browser, cards as crd, detection as dtc, dictionary as dic, explain as xpl
from recsae_utils import specificity as spc

ROOT = Path(__file__).resolve().parents[1]
XSS = "<img src=x onerror=alert(1)></script>"
XSS_LABEL = "evil <img src=y onerror=alert(2)> label <!-- \u2028"
M, K = 16, 4


# ----------------------------------------------------------------------------------------------------
# A small concept dictionary from the tiny synthetic MovieLens and planted activations


@pytest.fixture(scope="module")
def world(tiny_ds, tiny_inst):
    tr = tiny_inst["train"]
    rng = np.random.default_rng(0)
    n = len(tr)
    items = tiny_ds.items.copy()
    xss_item = 5
    items.loc[items["item_id"] == xss_item, "title"] = XSS
    # latent j fires strongly when the most recent history item is j + 1 (so each latent has clear top
    # movies), plus random weak firings of the other latents
    idx = np.stack([rng.choice(M, K, replace=False) for _ in range(n)])
    val = (rng.exponential(0.3, (n, K)) * (rng.random((n, K)) < 0.7)).astype(np.float32)
    last = tr.hist[:, 0]
    planted = (last >= 1) & (last <= M)
    for r in np.flatnonzero(planted):  # the planted latent first, then distinct random others
        idx[r, 0] = last[r] - 1
        idx[r, 1:] = rng.choice([j for j in range(M) if j != idx[r, 0]], K - 1, replace=False)
    val[planted, 0] = 2.0 + rng.random(planted.sum())
    d = dic.build_dictionaries(idx, val, tr.hist, items, m=M, top_n=20)
    cards = crd.latent_cards(d)
    labels = pd.DataFrame([{"latent": c["latent"], **crd.offline_label(c), "labeler": "offline-metadata"}
                           for c in cards])
    labels.loc[labels["latent"] == 3, "name"] = XSS_LABEL
    W_dec, E = rng.normal(size=(M, 8)), rng.normal(size=(d.n_items, 8))
    tables = dic.dictionary_tables(d, labels=labels.set_index("latent")["name"].to_dict(),
                                 promoted=dic.promoted_items(W_dec, E, top=5))
    dev = tiny_inst["dev"]
    nd = len(dev)
    idx_h = np.stack([rng.choice(M, K, replace=False) for _ in range(nd)])
    val_h = rng.exponential(1.0, (nd, K)).astype(np.float32)
    scores = dtc.detection_scores(d, cards, idx_h, val_h, dev.hist)
    ic = xpl.instance_concepts(idx, val, top=5, m=M)
    ic["user"] = tr.user[ic["instance"].to_numpy()]
    last_inst = pd.Series(np.arange(n)).groupby(tr.user).max()   # each user's latest training instance
    users = ic[ic["instance"].isin(last_inst.to_numpy())].drop(columns="label")
    movies = xpl.item_concepts(idx, val, tr.hist, d.n_items, top=5, m=M)
    spec = spc.Specificity(np.ones(M), np.isin(np.arange(M), [0, 1]))   # latents 0 and 1 as the background
    ics = xpl.instance_concepts(idx, val, top=5, m=M, spec=spec)
    ics["user"] = tr.user[ics["instance"].to_numpy()]
    users_spec = ics[ics["instance"].isin(last_inst.to_numpy())].drop(columns="label")
    movies_spec = xpl.item_concepts(idx, val, tr.hist, d.n_items, top=5, m=M, spec=spec)
    return dict(d=d, tables=tables, labels=labels, scores=scores, users=users, movies=movies, items=items,
                xss_item=xss_item, users_spec=users_spec, movies_spec=movies_spec)


@pytest.fixture(scope="module")
def page_file(world, tmp_path_factory):
    path = tmp_path_factory.mktemp("browser") / "browser.html"
    w = world
    out = browser.write_browser(path, w["tables"], w["labels"], w["scores"], w["users"], w["movies"],
                                "Tiny </title><script>alert(3)</script> browser", items=w["items"])
    assert out == path and path.exists()
    return path


@pytest.fixture(scope="module")
def plain_page_file(world, tmp_path_factory):
    """The same page with the data as escaped JSON (compress=False)."""
    path = tmp_path_factory.mktemp("browser-plain") / "browser.html"
    w = world
    browser.write_browser(path, w["tables"], w["labels"], w["scores"], w["users"], w["movies"],
                          "Tiny </title><script>alert(3)</script> browser", items=w["items"], compress=False)
    return path


def grocery_items(world) -> pd.DataFrame:
    """A Grocery-like items table: ids and a category, no titles and no genres (as ReChorus item_meta)."""
    items = world["items"]
    extra = pd.DataFrame({"item_id": np.arange(items["item_id"].max() + 1, items["item_id"].max() + 8)})
    out = pd.concat([items[["item_id"]], extra], ignore_index=True)   # items the page never shows count too
    out["i_category"] = out["item_id"] % 5
    return out


@pytest.fixture(scope="module")
def grocery_page(world, tmp_path_factory):
    """A page with the Grocery words: items without titles, categories instead of genres, no decades."""
    path = tmp_path_factory.mktemp("browser-grocery") / "browser.html"
    w = world
    items = grocery_items(w)
    tables = {k: (v.drop(columns=["title"], errors="ignore") if k in ("latent_items", "promoted") else v)
              for k, v in w["tables"].items() if k != "decade_enrichment"}
    labels = pd.DataFrame({"latent": np.arange(M), "name": [f"category mix {j}" for j in range(M)],
                           "description": "fires on baskets of one category", "labeler": "offline-metadata"})
    browser.write_browser(path, tables, labels, w["scores"], w["users"], w["movies"], "Tiny grocery",
                          items=items, noun="item", genre_noun="category")
    return path, items


def shown_rows(tables, k: int = browser.MAX_ITEMS) -> pd.DataFrame:
    """Rows a card shows: each latent's top k movies by count and its top k by strength (ties: rank)."""
    li = tables["latent_items"]
    parts = [li.sort_values(["latent", col, "rank"], ascending=[True, False, True]).groupby("latent").head(k)
             for col in ("count", "strength")]
    return pd.concat(parts).drop_duplicates(["latent", "item_id"])


def expected_latents(tables, item_id: int) -> list[int]:
    """The latents the search should list for a movie, best first: those that show it on their card,
    by the movie's rank in the latent's list (shrunk lift), then count, then latent id (computed here
    independently of the browser's own data preparation)."""
    rows = shown_rows(tables)
    rows = rows[rows["item_id"] == item_id].sort_values(["rank", "count", "latent"], ascending=[True, False, True])
    assert len(rows)
    return rows["latent"].astype(int).tolist()


# ----------------------------------------------------------------------------------------------------
# Without a browser: data, escaping, size


DATA_RE = r'<script type="([^"]+)" id="recsae-data" data-encoding="([^"]+)">(.*?)</script>'


def _embedded(html_text: str) -> dict:
    """The page's data, decoded as the page does (gzip + base64, or plain JSON)."""
    m = re.search(DATA_RE, html_text, re.S)
    assert m
    typ, enc, body = m.groups()
    if enc == "gzip-base64":
        assert typ == "application/octet-stream" and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", body)
        return json.loads(gzip.decompress(base64.b64decode(body)).decode("utf-8"))
    assert (typ, enc) == ("application/json", "json")
    return json.loads(body)


@pytest.mark.parametrize("which", ["page_file", "plain_page_file"])
def test_file_is_self_contained_and_escaped(which, request, world):
    text = request.getfixturevalue(which).read_text(encoding="utf-8")
    # exactly our two scripts; no data can close a script, open a comment or add an element
    assert text.count("</script") == 2 and text.count("<script") == 2
    assert "<img" not in text and "<!--" not in text and "\u2028" not in text
    assert "</title><script>" not in text and "&lt;/title&gt;" in text
    # nothing external: no URLs the browser could fetch
    markup = re.sub(DATA_RE, "", text, flags=re.S)
    assert not re.search(r"(src|href)\s*=|@import|url\(", markup, re.I)
    assert "http://" not in text and "https://" not in text
    assert "Content-Security-Policy" in text and "connect-src 'none'" in text
    data = _embedded(text)
    assert data["items"][str(world["xss_item"])][0] == XSS            # the title survives the round trip
    assert any(lat.get("nm") == XSS_LABEL for lat in data["latents"])
    assert data["n_latents"] == M and len(data["latents"]) == M
    assert "bal_acc_random" in data["score_cols"] and "auc_random" in data["score_cols"]
    lat0 = next(lat for lat in data["latents"] if lat.get("it"))
    assert {"nf", "f", "nm", "ds", "lb", "it", "ge", "pr", "sc"} <= set(lat0)
    assert data["n_items"] == len(world["items"]) and data["words"]["items"] == "movies"


def test_template_is_filled_in_one_pass(tmp_path, world):
    """A title that looks like a placeholder stays text: the template is filled in one pass."""
    p = browser.write_browser(tmp_path / "b.html", world["tables"], title="{{js}} {{data}} </style>")
    text = p.read_text(encoding="utf-8")
    assert text.count("<script") == 2 and text.count("</style") == 1
    assert "<title>{{js}} {{data}} &lt;/style&gt;</title>" in text
    assert _embedded(text)["title"] == "{{js}} {{data}} </style>"


def test_words_and_item_count(world):
    items = grocery_items(world)
    data = browser.browser_data(world["tables"], items=items, noun="item", genre_noun="category")
    assert data["words"] == {"item": "item", "items": "items", "genre": "category", "genres": "categories"}
    assert data["n_items"] == len(items) > len(data["items"])   # the dataset's count, not the shown items
    i = next(iter(data["items"]))
    assert data["items"][i][1] == f"category {int(i) % 5}"
    d_ml = browser.browser_data(world["tables"], items=world["items"])
    assert d_ml["words"]["items"] == "movies" and d_ml["words"]["genres"] == "genres"
    assert d_ml["n_items"] == world["items"]["item_id"].nunique()
    # titles that are only the page's own fallback ("item 7") are not stored
    li = world["tables"]["latent_items"].assign(title=lambda d: "item " + d["item_id"].astype(str))
    d_fb = browser.browser_data({**world["tables"], "latent_items": li})
    assert all(v[0] is None for v in d_fb["items"].values())
    with pytest.raises(ValueError, match="noun"):
        browser.browser_data(world["tables"], noun=" ")


def test_assets_are_package_data():
    """The page's files are read through importlib.resources, and pyproject installs every one of them
    (so a non-editable install has them too)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    pkg = "recsae_utils." + browser.ASSET_DIR
    assert pkg in conf["packages"]
    globs = conf["package-data"][pkg]
    files = sorted(p.name for p in (ROOT / "recsae_utils" / browser.ASSET_DIR).iterdir() if p.is_file())
    assert files == ["browser.css", "browser.html", "browser.js", "playground.js"]
    assert all(any(Path(f).match(g) for g in globs) for f in files)
    for f in files:
        assert browser.asset(f) == (ROOT / "recsae_utils" / browser.ASSET_DIR / f).read_text(encoding="utf-8")
    assert set(re.findall(r"\{\{(\w+)\}\}", browser.asset("browser.html"))) == \
        {"csp", "title", "css", "js", "data_type", "encoding", "data"}


def test_embed_json_escapes_breakouts():
    s = browser.embed_json({"t": "</script><!-- \u2028\u2029 & >"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s and "\u2029" not in s
    assert json.loads(s) == {"t": "</script><!-- \u2028\u2029 & >"}
    with pytest.raises(ValueError):
        browser.embed_json({"x": float("nan")})


def test_users_take_the_latest_instance(world):
    users = world["users"]
    older = users.assign(instance=users["instance"] - 1, activation=99.0)   # an earlier, stronger instance
    a = browser.browser_data(world["tables"], users=users)["users"]
    b = browser.browser_data(world["tables"], users=pd.concat([users, older]))["users"]
    assert a == b and len(a) == users["user"].nunique()
    assert all(v[0][1] != 99.0 for v in a.values())


def test_profiles_keep_specific_first_and_flag_the_background(world):
    data = browser.browser_data(world["tables"], users=world["users_spec"], movies=world["movies_spec"])
    # a user row is [latent, value] (+ [1] in the background), a movie row [latent, strength, share] (+ [1])
    for width, table in ((2, data["users"]), (3, data["movies"])):
        for rows in table.values():
            bg = [len(r) == width + 1 and r[-1] == 1 for r in rows]
            assert bg == sorted(bg)                                      # specific rows first, then the background
            assert all((r[0] in (0, 1)) == b for r, b in zip(rows, bg))  # the background: exactly the generic ones
    mv = world["movies_spec"]
    one = mv[mv["item_id"] == 7]
    want = one[one["group"] == "specific"].sort_values("rank")["latent"].tolist() \
        + one[one["group"] == "background"].sort_values("rank")["latent"].tolist()
    assert [r[0] for r in data["movies"]["7"]] == want and any(len(r) == 4 for r in data["movies"]["7"])


def test_top_items_union_and_labels_fallback(world):
    data = browser.browser_data(world["tables"], None, None, None, None, "t", items=world["items"], max_items=3)
    li = world["tables"]["latent_items"]
    for lat in data["latents"]:
        rows = li[li["latent"] == lat["id"]]
        got = {r[0] for r in lat.get("it", [])}
        want = set(shown_rows(world["tables"], 3).query("latent == @lat['id']")["item_id"])
        assert got == want and len(got) <= 6
        if len(rows):
            assert rows["count"].max() == max(r[2] for r in lat["it"])
            ranks = [r[1] for r in lat["it"]]
            assert ranks == sorted(ranks)      # kept in the table's (lift) order
        assert lat["nm"] == world["tables"]["latents"].set_index("latent").loc[lat["id"], "label"]
        assert "lb" not in lat   # no labeler known without a labels table


def _fake_tables(m=2048, n_items=3706, n_users=6040, seed=0):
    """Tables of dictionary_tables' shape at ML-1M scale (fast: no dictionary build)."""
    rng = np.random.default_rng(seed)
    genres = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
              "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
              "Western"]
    decades = np.arange(1910, 2010, 10)
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1),
                          "title": [f"Some Movie Title Number {i} ({1930 + i % 70})" for i in range(1, n_items + 1)],
                          "genres": [[genres[i % 18], genres[(i * 7) % 18]] for i in range(n_items)]})
    lat = pd.DataFrame({"latent": np.arange(m), "n_fire": rng.integers(0, 50000, m), "freq": rng.random(m) * 0.1,
                        "mean_act": rng.random(m), "max_act": rng.random(m) * 5, "n_top": 50,
                        "pop_spearman": rng.normal(0, .2, m), "popularity_pct": rng.random(m) * 100,
                        "coverage": rng.random(m) * .3, "generic": rng.random(m) < .05,
                        "popularity": rng.random(m) < .1, "label": [f"latent {j}" for j in range(m)]})
    nr = 200
    # counts fall with the lift rank (noisily) and strength ~ count x activation, as in real dictionaries
    rank = np.tile(np.arange(1, nr + 1), m)
    count = np.maximum(1, np.rint(50 * np.exp(-rank / 40) * rng.lognormal(0, .6, m * nr))).astype(int)
    li = pd.DataFrame({"latent": np.repeat(np.arange(m), nr), "rank": rank,
                       "item_id": rng.integers(1, n_items + 1, m * nr), "count": count,
                       "strength": count * rng.uniform(0.5, 3.0, m * nr), "lift": 30 / np.sqrt(rank),
                       "lift_shrunk": 20 / np.sqrt(rank)})

    def enr(values, key):
        k = len(values)
        return pd.DataFrame({"latent": np.repeat(np.arange(m), k), key: np.tile(values, m),
                             "top_count": rng.integers(0, 300, m * k), "top_slots": 1000.0,
                             "share_top": rng.random(m * k) * .3, "share_all": rng.random(m * k) * .3,
                             "odds_ratio": np.exp(rng.normal(0, 1, m * k)), "p_value": rng.random(m * k),
                             "significant": rng.random(m * k) < .1})
    tables = {"latents": lat, "latent_items": li, "genre_enrichment": enr(np.array(genres, dtype=object), "genre"),
              "decade_enrichment": enr(decades, "decade"),
              "promoted": pd.DataFrame({"latent": np.repeat(np.arange(m), 10), "rank": np.tile(np.arange(1, 11), m),
                                        "item_id": rng.integers(1, n_items + 1, m * 10), "score": rng.normal(size=m * 10)})}
    labels = pd.DataFrame({"latent": np.arange(m), "name": [f"Comedy + Drama, 1990s releases, popular #{j}" for j in range(m)],
                           "description": ["Fires on histories rich in Comedy and Drama titles (genres enriched, odds ratio "
                                           f"2.{j % 10}, 1.8), mostly 1990s releases (odds ratio 1.9), of popular titles "
                                           "(popularity percentile 71, 50 = typical)." for j in range(m)],
                           "labeler": "openai:gpt-4o-mini"})
    scores = pd.DataFrame({"latent": np.arange(m), "has_signature": True, "threshold": rng.random(m),
                           "n_pos": 100, "n_neg": 9000, "bal_acc_random": rng.random(m), "auc_random": rng.random(m),
                           "n_pos_matched": 90, "n_neg_matched": 8000, "bal_acc_matched": rng.random(m),
                           "auc_matched": rng.random(m)})
    users = pd.DataFrame({"user": np.repeat(np.arange(1, n_users + 1), 5), "rank": np.tile(np.arange(1, 6), n_users),
                          "latent": rng.integers(0, m, n_users * 5), "activation": rng.random(n_users * 5) * 3})
    movies = pd.DataFrame({"item_id": np.repeat(np.arange(1, n_items + 1), 5), "rank": np.tile(np.arange(1, 6), n_items),
                           "latent": rng.integers(0, m, n_items * 5), "strength": rng.random(n_items * 5) * 500,
                           "share": rng.random(n_items * 5) * .2})
    return tables, labels, scores, users, movies, items


def test_size_at_2048_latents(tmp_path):
    tables, labels, scores, users, movies, items = _fake_tables()
    t0 = time.time()
    p = browser.write_browser(tmp_path / "big.html", tables, labels, scores, users, movies, "ML-1M", items=items)
    size = p.stat().st_size
    print(f"2048-latent browser: {size / 1e6:.2f} MB in {time.time() - t0:.1f} s")
    assert size < 3e6
    data = _embedded(p.read_text(encoding="utf-8"))
    assert len(data["latents"]) == 2048 and len(data["users"]) == 6040
    assert max(len(lat["it"]) for lat in data["latents"]) <= 3 * browser.MAX_ITEMS


# ----------------------------------------------------------------------------------------------------
# In Chromium


def _find_chromium() -> str | None:
    for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and os.path.exists(c):
            return c
    return None


@pytest.fixture(scope="session")
def chromium_bin():
    found = _find_chromium()
    if found:
        return found
    if os.environ.get("RECSAE_NO_APT"):
        pytest.skip("chromium not installed and RECSAE_NO_APT is set")
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium not installed (/usr/bin/chromium) and cannot apt-get install it (not root / no apt)")
    try:
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True,
                           text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("chromium not installed; apt-get install chromium timed out")
    found = _find_chromium()
    if not found:
        pytest.skip(f"chromium not installed; apt-get install chromium failed: {r.stderr.strip()[-300:]}")
    return found


class CDP:
    """A minimal Chrome DevTools protocol client over one browser-level websocket (flattened sessions)."""

    def __init__(self, ws_url: str, timeout: float = 20.0):
        websocket = pytest.importorskip("websocket", reason="websocket-client is needed to drive Chromium")
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.n = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _handle_event(self, msg: dict) -> None:
        self.events.append(msg)
        if msg.get("method") == "Page.javascriptDialogOpening":   # never leave the page blocked
            self.n += 1
            self.ws.send(json.dumps({"id": self.n, "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": True}, "sessionId": msg.get("sessionId")}))

    def call(self, method: str, browser_level: bool = False, **params):
        self.n += 1
        my = self.n
        msg = {"id": my, "method": method, "params": params}
        if self.session and not browser_level:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            r = json.loads(self.ws.recv())
            if r.get("id") == my:
                if "error" in r:
                    raise RuntimeError(f"{method}: {r['error']}")
                return r.get("result", {})
            if "method" in r:
                self._handle_event(r)

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 10.0):
        t_end = time.time() + timeout
        while time.time() < t_end:
            try:
                v = self.js(expr)
            except RuntimeError as e:                 # asked while the page navigates (a hash link to the other
                if "navigated" not in str(e):         # page): ask again once it has loaded
                    raise
                v = None
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for: {expr}")

    def click(self, selector: str):
        box = self.js(f"(function(){{var e=document.querySelector({json.dumps(selector)}); if(!e) return null;"
                      "e.scrollIntoView({block:'center'}); var r=e.getBoundingClientRect();"
                      "return {x:r.left+Math.min(20,r.width/2), y:r.top+r.height/2};})()")
        assert box, f"nothing to click at {selector}"
        for typ in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=typ, x=box["x"], y=box["y"], button="left",
                      clickCount=1 if typ != "mouseMoved" else 0)

    def type_into(self, selector: str, text: str):
        """Focus by a real click, select what is there, and type: the page sees input events."""
        self.click(selector)
        self.js(f"document.querySelector({json.dumps(selector)}).select()")
        self.call("Input.insertText", text=text)

    def key(self, key: str, code: int):
        for typ in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=typ, key=key, code=key, windowsVirtualKeyCode=code,
                      nativeVirtualKeyCode=code, **({"text": "\r"} if typ == "keyDown" and key == "Enter" else {}))

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


@pytest.fixture(scope="module")
def chrome(chromium_bin, tmp_path_factory):
    ud = tmp_path_factory.mktemp("chromium-profile")
    args = [chromium_bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions", "--mute-audio", "--disable-dev-shm-usage",
            f"--user-data-dir={ud}", "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cdp = None
    try:
        port_file = ud / "DevToolsActivePort"
        t_end = time.time() + 30
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if proc.poll() is not None:
                pytest.skip(f"chromium exited at start (code {proc.returncode})")
            if time.time() > t_end:
                pytest.skip("chromium did not open its DevTools port within 30 s")
            time.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        cdp = CDP(f"ws://127.0.0.1:{port}{path}")
        target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
        cdp.session = cdp.call("Target.attachToTarget", browser_level=True, targetId=target, flatten=True)["sessionId"]
        for dom in ("Page.enable", "Runtime.enable"):
            cdp.call(dom)
        cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
        yield cdp
    finally:
        if cdp is not None:
            cdp.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)   # the group of the chromium we started (its own session)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _load(cdp: CDP, url: str):
    """A fresh load (via about:blank, so a new #hash is not a same-document navigation)."""
    cdp.call("Page.navigate", url="about:blank")
    cdp.wait("document.readyState === 'complete' && location.href === 'about:blank'")
    cdp.call("Page.navigate", url=url)
    cdp.wait("document.readyState === 'complete' && document.body && document.body.getAttribute('data-ready') === '1'")


def _errors(cdp: CDP, since: int = 0) -> list:
    return [e for e in cdp.events[since:] if e.get("method") in ("Runtime.exceptionThrown", "Page.javascriptDialogOpening")
            or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")]


def _card_latent(cdp: CDP):
    return cdp.js("(function(){var c=document.getElementById('card'); return c.hidden ? null : "
                  "[c.getAttribute('data-latent'), document.getElementById('card-title').textContent];})()")


def _main_pane(cdp: CDP, sel: str) -> dict:
    """Where `sel` is drawn: inside #main, right of the side bar, starting within the first screen."""
    return cdp.js(f"(function(){{var e=document.querySelector({json.dumps(sel)}), m=document.getElementById('main'),"
                  "s=document.getElementById('side'); var r=e.getBoundingClientRect();"
                  "return {inMain: m.contains(e), shown: !e.hidden && r.height > 0, right: r.left >= s.getBoundingClientRect().right,"
                  "top: r.top, onScreen: r.top >= 0 && r.top < window.innerHeight, wide: r.width > 600};})()")


def test_browser_in_chromium(chrome, page_file, world):
    t0 = time.time()
    cdp = chrome
    url = page_file.resolve().as_uri()
    _load(cdp, url)   # the gzip payload is inflated in the page (data-ready only after that)
    assert cdp.js("document.getElementById('recsae-data').dataset.encoding") == "gzip-base64"
    assert cdp.js("document.title").startswith("Tiny </title><script>alert(3)</script>")
    assert f"{len(world['items'])} movies" in cdp.js("document.getElementById('meta').textContent")
    assert cdp.js("document.querySelectorAll('.result').length") > 0   # default list of concepts

    # 1. type a movie title, the latent whose top movies rank it best comes first; click it
    items = world["items"]
    title = items.loc[items["item_id"] == 7, "title"].iloc[0]
    want_all = expected_latents(world["tables"], 7)
    want = want_all[0]
    cdp.type_into("#search", title)
    cdp.wait("document.querySelectorAll('.result').length > 0 && "
             "document.querySelector('.result .why').textContent.indexOf('top movie') === 0")
    lat_list = cdp.js("Array.from(document.querySelectorAll('.result')).map(e => +e.dataset.latent)")
    assert lat_list[:len(want_all)] == want_all
    cdp.click('.result[data-rank="1"]')
    cdp.wait(f"document.getElementById('card').getAttribute('data-latent') === '{want}'")
    head = _card_latent(cdp)
    assert head[1].startswith(f"Latent {want} \u2014 ")
    tops = cdp.js("Array.from(document.querySelectorAll('#card-top-count .movie-title')).map(e => e.textContent)")
    assert title in tops
    assert cdp.js("document.querySelector('#card-top-count tr.hit .movie-title').textContent") == title
    for sec in ("#card-top-strength", "#card-genres", "#card-decades", "#card-promoted", "#card-scores",
                "#card-labeler", "#card-stats"):
        assert cdp.js(f"!!document.querySelector('{sec}')"), sec
    assert cdp.js("document.querySelector('#card-labeler').textContent") == "label by offline-metadata"
    ba = world["scores"].set_index("latent").loc[want, "bal_acc_random"]
    shown = cdp.js("document.querySelector('[data-score=bal_acc_random]').textContent")
    assert shown == "–" if np.isnan(ba) else abs(float(shown) - ba) < 2e-3

    # 2. Enter in the search box opens the first result (same path as the URL hash)
    cdp.js("document.getElementById('card').hidden = true")
    cdp.click("#search")
    cdp.key("Enter", 13)
    cdp.wait(f"!document.getElementById('card').hidden && document.getElementById('card').dataset.latent === '{want}'")

    # 3. the hostile title and label render as text: no element is created from them
    xss_want = expected_latents(world["tables"], world["xss_item"])[0]
    cdp.type_into("#search", "onerror=alert(1)")
    cdp.wait("document.querySelectorAll('.result').length > 0")
    sel = f'.result[data-latent="{xss_want}"]'
    cdp.click(sel)
    cdp.wait(f"document.getElementById('card').dataset.latent === '{xss_want}'")
    cells = cdp.js("Array.from(document.querySelectorAll('#card .movie-title')).map(e => e.textContent)")
    assert XSS in cells
    _load(cdp, url + "#latent=3")
    assert cdp.js("document.getElementById('card-title').textContent") == f"Latent 3 \u2014 {XSS_LABEL}"
    assert cdp.js("document.querySelectorAll('img').length") == 0
    assert cdp.js("document.querySelectorAll('script').length") == 2

    # 4. the URL hash performs the same search as typing
    _load(cdp, url + "#q=" + quote(title))
    assert cdp.js("document.getElementById('search').value") == title
    assert _card_latent(cdp)[0] == str(want)

    # 5. a user's concepts and a movie's concepts
    users = world["users"]
    uid = int(users["user"].iloc[0])
    u_want = users[users["user"] == uid].sort_values("activation", ascending=False, kind="stable")["latent"].tolist()
    cdp.type_into("#user-q", str(uid))
    cdp.wait("document.querySelectorAll('#profile-rows .profile-row').length > 0")
    assert cdp.js("Array.from(document.querySelectorAll('#profile-rows .profile-row')).map(e => +e.dataset.latent)") \
        == u_want[:browser.MAX_PROFILE]
    # the profile takes the main pane (the card gives way), in view, not below the fold in the side bar
    where = _main_pane(cdp, "#profile")
    assert where["inMain"] and where["shown"] and where["right"] and where["onScreen"] and where["wide"], where
    assert cdp.js("document.getElementById('card').hidden")
    cdp.click("#profile-rows .profile-row")
    cdp.wait(f"!document.getElementById('card').hidden && document.getElementById('card').dataset.latent === '{u_want[0]}'")
    assert cdp.js("document.getElementById('profile').hidden")
    assert cdp.js("document.getElementById('card-back').textContent") == f"\u2190 back to User {uid}: top concepts"
    cdp.click("#card-back")
    cdp.wait("!document.getElementById('profile').hidden && document.getElementById('card').hidden")
    mv = world["movies"]
    m_want = mv[mv["item_id"] == 7].sort_values("strength", ascending=False, kind="stable")["latent"].tolist()
    cdp.type_into("#movie-q", title)
    cdp.wait("document.getElementById('profile-title').textContent.indexOf('total strength') > 0")
    assert cdp.js("Array.from(document.querySelectorAll('#profile-rows .profile-row')).map(e => +e.dataset.latent)") \
        == m_want[:browser.MAX_PROFILE]
    assert cdp.js("document.getElementById('profile-title').textContent").startswith(f"{title} (id 7): ")
    where = _main_pane(cdp, "#profile")
    assert where["inMain"] and where["shown"] and where["onScreen"], where
    cdp.click("#profile-rows .profile-row")
    cdp.wait(f"document.getElementById('card').dataset.latent === '{m_want[0]}'")

    assert not _errors(cdp), _errors(cdp)

    # artifact: a screenshot of a movie search with its card open
    _load(cdp, url + "#q=" + quote(title) + "&user=" + str(uid))
    png = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
    out = ROOT / "test-artifacts" / "browser.png"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert time.time() - t0 < 60


def _result_latents(cdp: CDP) -> list[int]:
    return cdp.js("Array.from(document.querySelectorAll('.result')).map(e => +e.dataset.latent)")


def test_item_id_lookup_in_chromium(chrome, page_file, world):
    """A dataset item id finds the concepts whose top items include it (search) and its profile."""
    cdp = chrome
    _load(cdp, page_file.resolve().as_uri())
    rows = shown_rows(world["tables"])
    iid = int(rows.loc[rows["item_id"] >= M, "item_id"].value_counts().index[0])   # not also a latent id
    want = expected_latents(world["tables"], iid)
    items = world["items"]
    title = items.loc[items["item_id"] == iid, "title"].iloc[0]
    for q in (str(iid), f"item {iid}", f"#{iid}"):
        cdp.type_into("#search", q)
        if q.startswith("#"):   # "#n" is a latent id only
            cdp.wait(f"document.getElementById('result-info').textContent.indexOf('{q}') > 0")
            assert not any(lat == iid for lat in _result_latents(cdp))
            continue
        cdp.wait("document.querySelectorAll('.result').length > 0")
        assert _result_latents(cdp)[:len(want)] == want, q
        assert cdp.js("document.querySelector('.result .why').textContent").startswith("top movie #")
    cdp.click('.result[data-rank="1"]')
    cdp.wait(f"document.getElementById('card').dataset.latent === '{want[0]}'")
    assert cdp.js("document.querySelector('#card-top-count tr.hit .item-id').textContent") == str(iid)
    mv = world["movies"]
    m_want = mv[mv["item_id"] == iid].sort_values("strength", ascending=False, kind="stable")["latent"].tolist()
    cdp.type_into("#movie-q", str(iid))
    cdp.wait("document.getElementById('profile-title').textContent.indexOf('total strength') > 0")
    assert cdp.js("document.getElementById('profile-title').textContent").startswith(f"{title} (id {iid}): ")
    assert cdp.js("Array.from(document.querySelectorAll('#profile-rows .profile-row')).map(e => +e.dataset.latent)") \
        == m_want[:browser.MAX_PROFILE]
    _load(cdp, page_file.resolve().as_uri() + f"#item={iid}")
    assert cdp.js("document.getElementById('profile-title').textContent").startswith(f"{title} (id {iid}): ")
    assert not _errors(cdp), _errors(cdp)


def test_grocery_words_in_chromium(chrome, grocery_page, world):
    """Grocery: items and categories, the dataset's item count, no movie wording anywhere on the page."""
    cdp = chrome
    path, items = grocery_page
    url = path.resolve().as_uri()
    n0 = len(cdp.events)
    _load(cdp, url)
    meta = cdp.js("document.getElementById('meta').textContent")
    assert f" {len(items)} items " in meta
    assert cdp.js("document.getElementById('movie-q').placeholder") == "item id or title"
    rows = shown_rows(world["tables"])
    iid = int(rows["item_id"].value_counts().index[0])
    want = expected_latents(world["tables"], iid)
    cdp.type_into("#search", f"item {iid}")
    cdp.wait("document.querySelectorAll('.result').length > 0")
    assert _result_latents(cdp)[:len(want)] == want
    assert cdp.js("document.querySelector('.result .why').textContent").startswith("top item #")
    cdp.click('.result[data-rank="1"]')
    cdp.wait(f"document.getElementById('card').dataset.latent === '{want[0]}'")
    heads = cdp.js("Array.from(document.querySelectorAll('#card h3')).map(e => e.textContent)")
    assert "Top items by activation count" in heads and any(h.startswith("Category mix") for h in heads)
    assert not any("Decade" in h for h in heads)          # no decades in this dataset: no empty section
    assert cdp.js("document.querySelector('#card-top-count tr.hit .movie-title').textContent") == f"item {iid}"
    text = cdp.js("document.body.innerText").lower()
    cdp.type_into("#movie-q", str(iid))
    cdp.wait("document.getElementById('profile-title').textContent.indexOf('total strength') > 0")
    assert cdp.js("document.getElementById('profile-title').textContent").startswith(f"item {iid} (id {iid}): ")
    assert cdp.js("document.getElementById('profile-note').textContent") == f"category {iid % 5}"
    text += cdp.js("document.body.innerText").lower()
    text += " ".join(cdp.js("[document.getElementById('search').placeholder, document.getElementById('movie-q').placeholder]"))
    assert "movie" not in text and "genre" not in text
    assert not _errors(cdp, n0), _errors(cdp, n0)


def test_plain_json_page_in_chromium(chrome, plain_page_file):
    """compress=False: the same page from plain JSON."""
    cdp = chrome
    _load(cdp, plain_page_file.resolve().as_uri() + "#latent=3")
    assert cdp.js("document.getElementById('recsae-data').dataset.encoding") == "json"
    assert cdp.js("document.getElementById('card-title').textContent") == f"Latent 3 \u2014 {XSS_LABEL}"
    assert cdp.js("document.querySelectorAll('img').length") == 0


def test_background_group_in_chromium(chrome, world, tmp_path):
    """Specific-first profiles: the specific concepts, then one 'Background' heading, then the generic ones."""
    path = browser.write_browser(tmp_path / "spec.html", world["tables"], world["labels"], world["scores"],
                                 world["users_spec"], world["movies_spec"], "Tiny", items=world["items"])
    mv = world["movies_spec"]
    one = mv[mv["item_id"] == 7]
    spec_want = one[one["group"] == "specific"].sort_values("rank")["latent"].tolist()
    bg_want = one[one["group"] == "background"].sort_values("rank")["latent"].tolist()
    assert spec_want and bg_want
    _load(chrome, path.resolve().as_uri() + "#item=7")
    chrome.wait("document.querySelectorAll('#profile-rows .profile-row').length > 0")
    rows = chrome.js("Array.from(document.getElementById('profile-rows').children).map(e => "
                     "[e.className, e.dataset.latent === undefined ? null : +e.dataset.latent, e.textContent])")
    heads = [i for i, r in enumerate(rows) if r[0] == "profile-group"]
    assert len(heads) == 1 and rows[heads[0]][2].startswith("Background: generic concepts")
    h = heads[0]
    assert [r[1] for r in rows[:h]] == spec_want and all(r[0] == "profile-row" for r in rows[:h])
    assert [r[1] for r in rows[h + 1:]] == bg_want and all(r[0] == "profile-row background" for r in rows[h + 1:])
    users = world["users_spec"]
    uid = int(users.loc[users["group"] == "background", "user"].iloc[0])
    chrome.type_into("#user-q", str(uid))
    chrome.wait("document.getElementById('profile-title').textContent.indexOf('User') === 0")
    assert chrome.js("document.querySelectorAll('#profile-rows .profile-group').length") == 1
    assert set(chrome.js("Array.from(document.querySelectorAll('#profile-rows .profile-row.background'))"
                         ".map(e => +e.dataset.latent)")) <= {0, 1}
    assert not _errors(chrome), _errors(chrome)


def test_long_descriptions_are_cut_at_a_boundary():
    """The page keeps a description's start (cut at '; ' or '. ', marked with an ellipsis) within its size
    budget; short ones and None pass unchanged."""
    long = "Fires on Comedy. Typical titles: " + "; ".join(f"Title {i} (1999) (3.{i}x base rate)" for i in range(40))
    cut = browser._short(long)
    assert cut.endswith(" …") and len(cut) <= browser.DESC_CHARS + 2 and long.startswith(cut[:-2])
    assert cut[:-2].endswith("base rate)")                       # at a boundary, not inside a title
    assert browser._short("short text") == "short text" and browser._short(None) is None
    assert browser._short("x" * 1000).startswith("x" * browser.DESC_CHARS)   # no boundary: a hard cut


# ----------------------------------------------------------------------------------------------------
# Steering examples on the cards (interventions.browser_examples)


def _steering(world) -> dict:
    items = world["items"]["item_id"].astype(int).tolist()
    return {3: {"user": XSS_LABEL, "beta": 1.0, "before": items[:10], "after": items[5:15]},
            4: {"user": 17, "beta": 1.0, "before": items[:10], "after": items[:10]}}


def test_steering_examples_are_carried(world):
    st = _steering(world)
    data = browser.browser_data(world["tables"], world["labels"], items=world["items"], steering=st)
    lat = {l["id"]: l for l in data["latents"]}
    assert lat[3]["st"] == {"u": XSS_LABEL, "b": 1.0, "bf": st[3]["before"], "af": st[3]["after"]}
    assert lat[4]["st"]["u"] == "17" and "st" not in lat[5]
    assert {str(i) for i in st[3]["before"] + st[3]["after"]} <= set(data["items"])   # titles on the page
    assert all("st" not in l for l in browser.browser_data(world["tables"], world["labels"])["latents"])


def test_steering_card_in_chromium(chrome, world, tmp_path):
    st = _steering(world)
    path = browser.write_browser(tmp_path / "steer.html", world["tables"], world["labels"], world["scores"],
                                 items=world["items"], steering=st)
    _load(chrome, path.resolve().as_uri() + "#latent=3")
    chrome.wait("document.getElementById('card-steering') !== null")
    lists = chrome.js("Array.from(document.querySelectorAll('#card-steering ol')).map(o => o.children.length)")
    assert lists == [10, 10]
    assert chrome.js("document.querySelectorAll('#card-steering li.steered-new').length") == 5
    assert XSS_LABEL in chrome.js("document.querySelector('#card-steering h3').textContent")   # text, not markup
    assert not _errors(chrome), _errors(chrome)


def test_home_list_puts_specific_concepts_first_in_chromium(chrome, world, tmp_path):
    """The list a user sees first: specific concepts (most frequent first), then the generic background,
    marked as such (the generic flag set here on the two most frequent latents)."""
    tables = dict(world["tables"])
    lat = tables["latents"].copy()
    top2 = lat.sort_values("freq", ascending=False)["latent"].head(2).tolist()
    lat["generic"] = lat["latent"].isin(top2)
    tables["latents"] = lat
    path = browser.write_browser(tmp_path / "home.html", tables, world["labels"], world["scores"], items=world["items"])
    _load(chrome, path.resolve().as_uri())
    chrome.wait("document.querySelectorAll('#results li').length > 0")
    texts = chrome.js("Array.from(document.querySelectorAll('#results li')).map(e => e.textContent)")
    bg = [i for i, t in enumerate(texts) if "background (generic)" in t]
    assert len(bg) == 2 and bg == list(range(len(texts) - 2, len(texts)))     # the two generic ones, last
    assert not _errors(chrome), _errors(chrome)


def test_sides_flag_in_browser_data(world):
    """A latent whose input and output sides disagree carries its overlap into the page, which flags it below
    IO_DISAGREE; a latent without the column gets no 'io' key."""
    from recsae_utils.yardstick import IO_DISAGREE

    lat = world["tables"]["latents"].copy()
    lat["io_overlap"] = np.where(lat["latent"] == 0, 0.05, 0.6)
    data = browser.browser_data({**world["tables"], "latents": lat}, items=world["items"])
    by_id = {r["id"]: r for r in data["latents"]}
    assert by_id[0]["io"] == 0.05 < data["io_disagree"] == IO_DISAGREE
    assert all(r["io"] == 0.6 for j, r in by_id.items() if j != 0)
    assert "io" not in browser.browser_data(world["tables"], items=world["items"])["latents"][0]


# ----------------------------------------------------------------------------------------------------
# The steering playground: the page redoes interventions.recommend (and SASRec for a typed history)


def _pg_world(world, tiny_ds, tiny_inst, n_layers: int, n_heads: int):
    """A random SASRec (weights large enough that every part of the forward pass matters), a decoder with
    the world's M latents, and the steering context of the test instances on float16-rounded arrays (what
    the page decodes), so Python and the page rank the same numbers."""
    from recsae_utils import data, playground as pgm
    from recsae_utils.interventions import SteeringContext
    from recsae_utils.model import SASRec, SASRecConfig

    torch = pytest.importorskip("torch")
    torch.manual_seed(n_layers)
    model = SASRec(SASRecConfig(n_items=tiny_ds.n_items, d_model=16, n_layers=n_layers, n_heads=n_heads, init_std=0.4)).eval()
    with torch.no_grad():
        for blk in model.blocks:   # LayerNorm's affine parts away from their 1 / 0 start, so a missing one shows
            for ln in (blk.ln1, blk.ln2):
                ln.weight.normal_(1.0, 0.3)
                ln.bias.normal_(0.0, 0.3)
    te = tiny_inst["test"]
    with torch.no_grad():
        h = model.user_repr(torch.as_tensor(te.hist, dtype=torch.long))
    W = torch.randn(M, 16, generator=torch.Generator().manual_seed(1))
    E16, W16, h16 = (torch.from_numpy(pgm.half(x)) for x in (model.item_emb.weight, W, h))
    n = len(h)
    ctx = SteeringContext(E16, W16, h16, torch.zeros(n, 1, dtype=torch.long), torch.zeros(n, 1), np.asarray(te.user),
                          np.asarray(te.item), data.user_item_csr(tiny_ds), float(h16.norm(dim=1).median()), tiny_ds.items)
    return model, ctx, pgm.playground_data(ctx, model)


def _pg_page(world, tmp_path, pg) -> Path:
    """Write the browser (concept_browser.html) with playground data; return the playground's own page."""
    browser.write_browser(tmp_path / "concept_browser.html", world["tables"], world["labels"], world["scores"],
                          items=world["items"], playground=pg)
    return tmp_path / browser.PLAYGROUND_PAGE


def _pg_add_concept(cdp, j: int):
    cdp.type_into("#pg-concept-q", str(j))
    cdp.wait(f"document.querySelector('#pg-concept-hits li[data-latent=\"{j}\"]') !== null")
    cdp.click(f'#pg-concept-hits li[data-latent="{j}"]')
    cdp.wait(f"document.querySelector('.pg-slider[data-latent=\"{j}\"] input') !== null")


def _pg_slide(cdp, j: int, dose: float):
    """Move concept j's slider to `dose` the way a drag ends: set its value, fire its input event."""
    cdp.js(f"(function(){{var i=document.querySelector('.pg-slider[data-latent=\"{j}\"] input'); i.value={dose!r};"
           "i.dispatchEvent(new Event('input', {bubbles: true}));})()")


def _pg_shown(cdp) -> dict:
    return cdp.js("({after: Array.from(document.querySelectorAll('#pg-top tbody tr')).map(r => Number(r.dataset.item)),"
                  " from: Array.from(document.querySelectorAll('#pg-top td.pg-from')).map(t => parseInt(t.textContent)),"
                  " before: Array.from(document.querySelectorAll('#pg-top td.pg-before')).map(t => Number(t.dataset.item)),"
                  " kl: window.recsaeBrowser.playground.result().kl})")


def _py_kl(ctx, user: int, steer: dict) -> float:
    import torch
    from recsae_utils import interventions as I

    r = np.flatnonzero(ctx.users == user)[-1:]
    h1 = I.edit_h(ctx.h[r], ctx.z_idx[r], ctx.z_val[r], ctx.W_dec, I.Edit(steer=steer), ctx.h_norm)
    s0 = I.rank_all(ctx.E.double(), ctx.h[r].double(), ctx.users[r], ctx.mask).scores[0]
    s1 = I.rank_all(ctx.E.double(), h1.double(), ctx.users[r], ctx.mask).scores[0]
    ok = torch.isfinite(s0)
    p0, l1 = s0[ok].log_softmax(0), s1[ok].log_softmax(0)
    return float((p0.exp() * (p0 - l1)).sum())


def test_playground_data_round_trips(world, tiny_ds, tiny_inst):
    """What the page decodes: float16 arrays, each user's last instance, the known items from the gaps."""
    import base64 as b64

    from recsae_utils import playground as pgm

    _, ctx, pg = _pg_world(world, tiny_ds, tiny_inst, 1, 1)
    users = np.unique(ctx.users)
    assert pg["users"] == users.tolist() and pg["n_users_all"] == len(users)
    H = np.frombuffer(b64.b64decode(pg["H"]), "<f2").reshape(len(users), 16)
    last = [np.flatnonzero(ctx.users == u)[-1] for u in users]
    assert np.array_equal(H.astype(np.float32), ctx.h[last].numpy())
    counts = np.frombuffer(b64.b64decode(pg["counts"]), "<u2")
    seen = np.split(np.frombuffer(b64.b64decode(pg["gaps"]), "<u2").astype(np.int64), np.cumsum(counts)[:-1])
    indptr, known = ctx.mask
    for u, g in zip(users, seen):
        assert np.cumsum(g).tolist() == sorted(known[indptr[u]:indptr[u + 1]].tolist())
    some = pgm.pick_users(users, 3)
    assert len(some) == 3 and set(some) <= set(users) and (some == pgm.pick_users(users, 3)).all()
    with pytest.raises(ValueError, match="no instance"):
        pgm.playground_data(ctx, users=[int(users.max()) + 1000])


def test_playground_is_its_own_page(world, tiny_ds, tiny_inst, tmp_path, capsys):
    """The playground page (beside the browser) carries the arrays, every item's title and the labels; the
    browser carries neither the arrays nor the extra titles, only a link. Over the per-page budget the
    playground page is not written (a stale one is removed), the browser has no link, the console says so."""
    _, ctx, pg = _pg_world(world, tiny_ds, tiny_inst, 1, 1)
    page = _pg_page(world, tmp_path, pg)
    assert page.parent == tmp_path and page.name == "steering_playground.html"
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)\s*=|@import|url\(", re.sub(DATA_RE, "", text, flags=re.S), re.I)
    assert "var recsaePlayground" in text and "var recsaePlayground" not in (tmp_path / "concept_browser.html").read_text(encoding="utf-8")
    with_pg = _embedded(text)
    assert with_pg["pg"] == json.loads(json.dumps(pg)) and with_pg["page"] == "playground"
    assert len(with_pg["items"]) == tiny_ds.n_items - 1 and with_pg["browser_href"] == "concept_browser.html"
    assert [l["id"] for l in with_pg["latents"]] == list(range(M)) and not with_pg["users"]
    assert all(set(l) <= set(browser.PLAYGROUND_LATENT_KEYS) for l in with_pg["latents"])
    main = _embedded((tmp_path / "concept_browser.html").read_text(encoding="utf-8"))
    plain = browser.browser_data(world["tables"], world["labels"], world["scores"], items=world["items"])
    assert "pg" not in main and main["pg_href"] == "steering_playground.html"
    assert main["items"] == plain["items"] and main["latents"] == plain["latents"]
    browser.write_browser(tmp_path / "concept_browser.html", world["tables"], world["labels"], items=world["items"],
                          playground=pg, playground_budget_mb=0.01)
    assert not page.exists() and "pg_href" not in _embedded((tmp_path / "concept_browser.html").read_text(encoding="utf-8"))
    assert "steering playground is left out (steering_playground.html not written)" in capsys.readouterr().out


def test_playground_matches_recommend_in_chromium(chrome, world, tiny_ds, tiny_inst, tmp_path):
    """A user picked by id, two concepts on sliders: the page's top 10, each item's earlier rank and the KL
    are interventions.recommend's for the same edit; moving a slider back and the reset restore the list."""
    from recsae_utils import interventions as I

    _, ctx, pg = _pg_world(world, tiny_ds, tiny_inst, 1, 1)
    _load(chrome, _pg_page(world, tmp_path, pg).resolve().as_uri())
    assert _main_pane(chrome, "#playground")["shown"]   # the page opens on the playground, the browser's panels hidden
    assert chrome.js("document.getElementById('search-panel').hidden && document.getElementById('profiles-panel').hidden")
    assert chrome.js("document.getElementById('pg-open').getAttribute('href')") == "concept_browser.html"
    users = pg["users"]
    checked = 0
    for user in (users[0], users[len(users) // 2], users[-1]):
        chrome.type_into("#pg-user", str(user))
        chrome.wait("document.querySelectorAll('#pg-top tbody tr').length === 10")
        ref = I.recommend(ctx, user)
        if checked:
            chrome.click("#pg-reset")   # the doses stay when the user changes: back to 0 first
        got = _pg_shown(chrome)
        assert got["after"] == got["before"] == ref["item_before"].tolist()
        for j in (3, 7):
            if not chrome.js(f"document.querySelector('.pg-slider[data-latent=\"{j}\"]') !== null"):
                _pg_add_concept(chrome, j)
        for steer in ({3: 0.75, 7: 0.0}, {3: 0.75, 7: -1.5}, {3: -2.0, 7: 2.5}):
            for j, b in steer.items():
                _pg_slide(chrome, j, b)
            ref = I.recommend(ctx, user, steer=steer)
            got = _pg_shown(chrome)
            assert got["after"] == ref["item_after"].tolist(), (user, steer)
            assert got["before"] == ref["item_before"].tolist()
            assert got["from"] == ref["rank_before"].tolist()
            assert got["kl"] == pytest.approx(_py_kl(ctx, user, steer), rel=1e-6, abs=1e-9)
            checked += got["after"] != got["before"]
    assert checked >= 3          # the edits did move the lists (else the test could not fail)
    chrome.click("#pg-reset")
    got = _pg_shown(chrome)
    assert got["after"] == got["before"] and got["kl"] == 0
    assert chrome.js("Array.from(document.querySelectorAll('.pg-slider input')).map(i => Number(i.value))") == [0, 0]
    assert not _errors(chrome), _errors(chrome)
    # #playground=<user> opens the page on that user (also from the browser's address)
    _load(chrome, (tmp_path / "concept_browser.html").resolve().as_uri() + f"#playground={users[1]}")
    chrome.wait("location.href.includes('steering_playground.html') && document.readyState === 'complete' && document.body && document.body.getAttribute('data-ready') === '1'")
    assert _main_pane(chrome, "#playground")["shown"] and chrome.js("window.recsaeBrowser.playground.state.user") == users[1]
    # a card's "steer this" link opens the playground page with its latent on a slider
    _load(chrome, (tmp_path / "concept_browser.html").resolve().as_uri() + "#latent=5")
    assert chrome.js("document.getElementById('pg-open').getAttribute('href')") == "steering_playground.html"
    assert chrome.js("document.getElementById('card-playground').getAttribute('href')") == "steering_playground.html#latent=5"
    chrome.click("#card-playground")
    chrome.wait("location.href.includes('steering_playground.html') && document.readyState === 'complete' && document.body && document.body.getAttribute('data-ready') === '1'")
    chrome.wait("document.querySelector('.pg-slider[data-latent=\"5\"] input') !== null")
    chrome.js(f"location.hash = 'playground={users[1]}'")
    chrome.wait(f"window.recsaeBrowser.playground.state.user === {users[1]}")
    assert _main_pane(chrome, "#playground")["shown"]
    _pg_slide(chrome, 5, 1.0)
    assert _pg_shown(chrome)["after"] == I.recommend(ctx, users[1], steer={5: 1.0})["item_after"].tolist()
    assert not _errors(chrome), _errors(chrome)


@pytest.mark.parametrize("layers,heads", [(1, 1), (2, 2)])
def test_playground_typed_history_runs_sasrec_in_chromium(chrome, world, tiny_ds, tiny_inst, tmp_path, layers, heads):
    """A history typed by title gives SASRec's h_u (to float16 precision: the page's item table is float16),
    and its items are masked from the top 10."""
    import torch

    model, ctx, pg = _pg_world(world, tiny_ds, tiny_inst, layers, heads)
    _load(chrome, _pg_page(world, tmp_path, pg).resolve().as_uri())
    items = world["items"].set_index("item_id")["title"]
    picked = [i for i in (7, 2, 11, 4) if i != world["xss_item"]]
    for i in picked:   # oldest first, each by a title search and a click
        chrome.type_into("#pg-item-q", items[i])
        chrome.wait(f"document.querySelector('#pg-item-hits li[data-item=\"{i}\"]') !== null")
        chrome.click(f'#pg-item-hits li[data-item="{i}"]')
    chrome.wait(f"document.querySelectorAll('#pg-history li').length === {len(picked)}")
    assert chrome.js("Array.from(document.querySelectorAll('#pg-history li')).map(l => Number(l.dataset.item))") == picked
    got = np.asarray(chrome.js("window.recsaeBrowser.playground.h()"))
    with torch.no_grad():
        want = model.user_repr(torch.tensor([picked[::-1]])).numpy()[0]   # most recent first, as SASRec reads it
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 * np.abs(want).max())
    shown = _pg_shown(chrome)["after"]
    assert len(shown) == 10 and not set(shown) & set(picked) and 0 not in shown
    assert not _errors(chrome), _errors(chrome)
