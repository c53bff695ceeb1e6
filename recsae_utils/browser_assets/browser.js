(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };

  // The data: plain JSON, or gzip + base64 (decoded here with DecompressionStream, so start-up is async).
  function readData() {
    var node = $("recsae-data");
    if (node.getAttribute("data-encoding") !== "gzip-base64") return Promise.resolve(JSON.parse(node.textContent));
    if (typeof DecompressionStream === "undefined" || typeof Response === "undefined") {
      return Promise.reject(new Error("this browser cannot decompress the embedded data (no DecompressionStream); " +
                                      "open the page in a current Chrome, Edge, Firefox or Safari"));
    }
    var bin = atob(node.textContent.trim()), bytes = new Uint8Array(bin.length);
    for (var k = 0; k < bin.length; k++) bytes[k] = bin.charCodeAt(k);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }
  function fail(err) {
    $("meta").textContent = "The concept data could not be read: " + (err && err.message ? err.message : String(err));
    $("meta").className = "error";
    document.body.setAttribute("data-ready", "error");
    console.error(err);
  }
  readData().then(start).catch(fail);

  // The page's state: the data, its indexes, the search results, the playground (set once by start)
  var D, LAT, W, TITLES, HITS, HAS_DECADES, HAS_STEER, PG, current = [], highlightItem = null;

  function start(data) {
    D = data;
    buildIndexes();
    PG = D.pg ? recsaePlayground.init(D, { $: $, el: el, clear: clear, title: title, itemNote: itemNote, name: name,
                                           norm: norm, matchTitles: matchTitles, search: search, words: W }) : null;
    showMeta();
    wireInputs();
    showResults("");
    fromHash();
    document.body.setAttribute("data-ready", "1");
    window.recsaeBrowser = { search: search, openCard: openCard, showUser: showUser, showMovie: showMovie, playground: PG };
  }

  function buildIndexes() {   // latents by id; title index: normalised title -> ids; item -> latents whose top items include it
    LAT = {};
    D.latents.forEach(function (l) { LAT[l.id] = l; });
    W = D.words || { item: "movie", items: "movies", genre: "genre", genres: "genres" };
    TITLES = Object.keys(D.items).map(function (k) { return [Number(k), norm(title(k))]; });
    HITS = {};
    D.latents.forEach(function (l) {
      (l.it || []).forEach(function (r) {
        (HITS[r[0]] = HITS[r[0]] || []).push({ j: l.id, rank: r[1], count: r[2], strength: r[3], lift: r[4] });
      });
    });
    Object.keys(HITS).forEach(function (k) { HITS[k].sort(byHit); });
    HAS_DECADES = D.latents.some(function (l) { return l.de && l.de.length; });
    HAS_STEER = D.latents.some(function (l) { return l.st; });
  }

  function cap(s) { return s.charAt(0).toUpperCase() + s.slice(1); }

  // DOM helpers: text is always set with createTextNode / textContent, never parsed as HTML
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.appendChild(document.createTextNode(String(text)));
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function fmt(x, d) {
    if (x === null || x === undefined) return "–";
    if (typeof x !== "number") return String(x);
    if (Number.isInteger(x)) return String(x);
    return x.toFixed(d === undefined ? 2 : d);
  }
  function pct(x, d) { return (x === null || x === undefined) ? "–" : (100 * x).toFixed(d === undefined ? 1 : d) + "%"; }
  function norm(s) {
    s = String(s).toLowerCase();
    if (s.normalize) s = s.normalize("NFD").replace(/[\u0300-\u036f]/g, "");
    return s.replace(/\s+/g, " ").trim();
  }
  function title(i) { var t = D.items[String(i)]; return (t && t[0] !== null) ? t[0] : W.item + " " + i; }
  function itemNote(i) { var t = D.items[String(i)]; return (t && t[1]) ? t[1] : ""; }
  function name(j) { var l = LAT[j]; return (l && l.nm) ? l.nm : "latent " + j; }
  function bar(frac, baseFrac, neg) {
    var b = el("div", "bar"), f = el("div", "fill" + (neg ? " neg" : ""));
    f.style.width = Math.max(0, Math.min(1, frac || 0)) * 100 + "%";
    b.appendChild(f);
    if (baseFrac !== null && baseFrac !== undefined) {
      var m = el("div", "base");
      m.style.left = "calc(" + Math.max(0, Math.min(1, baseFrac)) * 100 + "% - 1px)";
      m.title = "all histories: " + pct(baseFrac);
      b.appendChild(m);
    }
    return b;
  }
  function td(text, cls) { return el("td", cls, text); }
  function tdBar(frac) { var c = el("td"); c.appendChild(bar(frac)); return c; }
  function headRow(tbl, cols) {
    var tr = el("tr");
    cols.forEach(function (c) { tr.appendChild(el("th", null, c)); });
    var th = el("thead"); th.appendChild(tr); tbl.appendChild(th);
  }

  // the indexes (buildIndexes)
  function byHit(a, b) {
    return (a.rank - b.rank) || ((b.count || 0) - (a.count || 0)) || (a.j - b.j);
  }
  function known(i) { return D.items[String(i)] !== undefined || HITS[i] !== undefined || D.movies[String(i)] !== undefined; }
  function itemId(q) {  // "2620", "#2620", "id 2620", "item 2620" -> 2620 (the dataset's item id)
    var m = /^(?:#|id\s*:?\s*|item\s*:?\s*)?(\d+)$/.exec(q);
    return m ? Number(m[1]) : null;
  }
  function matchTitles(q, onlyWithHits) {  // [[item, quality]] best first (0 exact or id, 1 prefix, 2 substring)
    var out = [], id = itemId(q);
    if (id !== null && known(id) && (!onlyWithHits || HITS[id] || D.movies[String(id)])) out.push([id, -1, ""]);
    TITLES.forEach(function (t) {
      if (t[0] === id) return;
      if (onlyWithHits && !HITS[t[0]] && !D.movies[String(t[0])]) return;
      var p = t[1].indexOf(q);
      if (p < 0) return;
      var noYear = t[1].replace(/\s*\(\d{4}\)\s*$/, "");
      var qual = (t[1] === q || noYear === q) ? 0 : (p === 0 ? 1 : 2);
      out.push([t[0], qual, t[1]]);
    });
    out.sort(function (a, b) { return (a[1] - b[1]) || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : a[0] - b[0]); });
    out.forEach(function (t) { if (t[1] < 0) t[1] = 0; });   // an id is an exact match
    return out;
  }

  // ---------------------------------------------------------------- main pane: a profile or a card
  function showPane(which) {
    ["card", "profile", "playground"].forEach(function (p) { $(p).hidden = which !== p; });
    $("hint").hidden = which !== null;
    var pane = which && $(which);
    if (pane) {
      var top = pane.getBoundingClientRect().top;
      if (top < 0 || top > window.innerHeight - 40) window.scrollBy(0, top - 8);
    }
  }

  // ---------------------------------------------------------------- search
  function search(raw) {
    var q = norm(raw || ""), res = [], seen = {};
    function add(j, tier, key, why, item) {
      if (seen[j] !== undefined || !LAT[j]) return;
      seen[j] = res.length;
      res.push({ j: j, tier: tier, key: key, why: why, item: item });
    }
    if (!q) {
      // specific concepts first (most frequent first); the generic background after them
      D.latents.filter(function (l) { return (l.nf || 0) > 0 || l.it; })
        .sort(function (a, b) { return ((a.gen || 0) - (b.gen || 0)) || ((b.f || 0) - (a.f || 0)) || (a.id - b.id); })
        .slice(0, 100).forEach(function (l) {
          add(l.id, 0, [0], (l.gen ? "background (generic): fires on " : "fires on ") + pct(l.f));
        });
      return res;
    }
    var m = /^(?:#|latent\s*)?(\d+)$/.exec(q);
    if (m) add(Number(m[1]), 0, [0], "latent id");
    var tier1 = [], tier3 = [];
    D.latents.forEach(function (l) {
      if (l.nm && norm(l.nm).indexOf(q) >= 0) tier1.push(l);
      else if (l.ds && norm(l.ds).indexOf(q) >= 0) tier3.push(l);
    });
    var byFreq = function (a, b) { return ((b.f || 0) - (a.f || 0)) || (a.id - b.id); };
    tier1.sort(byFreq).forEach(function (l) { add(l.id, 1, [], "label matches"); });
    var hits = [];
    matchTitles(q, true).slice(0, 50).forEach(function (t) {
      (HITS[t[0]] || []).forEach(function (h) { hits.push({ qual: t[1], item: t[0], h: h }); });
    });
    hits.sort(function (a, b) { return (a.qual - b.qual) || byHit(a.h, b.h); });
    hits.forEach(function (x) {
      add(x.h.j, 2, [], "top " + W.item + " #" + x.h.rank + ": " + title(x.item) + " (id " + x.item + ", count " +
          fmt(x.h.count) + ", lift " + fmt(x.h.lift, 1) + ")", x.item);
    });
    tier3.sort(byFreq).forEach(function (l) { add(l.id, 3, [], "description matches"); });
    return res;
  }
  function showResults(raw) {
    current = search(raw);
    var ol = $("results");
    clear(ol);
    var shown = current.slice(0, 200);
    shown.forEach(function (r, k) {
      var li = el("li", "result");
      li.setAttribute("data-latent", String(r.j));
      li.setAttribute("data-rank", String(k + 1));
      li.tabIndex = 0;
      li.appendChild(el("span", "rid", "#" + r.j));
      li.appendChild(el("span", "rlabel", name(r.j)));
      li.appendChild(el("span", "why", r.why));
      li.addEventListener("click", function () { openCard(r.j, r.item); });
      li.addEventListener("keydown", function (ev) { if (ev.key === "Enter") openCard(r.j, r.item); });
      ol.appendChild(li);
    });
    var q = (raw || "").trim();
    $("result-info").textContent = q
      ? current.length + " concept" + (current.length === 1 ? "" : "s") + " for \u201c" + q + "\u201d" +
        (current.length > shown.length ? " (first " + shown.length + " shown)" : "")
      : "Most frequent concepts (type a label word, a latent id, or a " + W.item + " id or title)";
    return current;
  }
  function openFirst() { if (current.length) openCard(current[0].j, current[0].item); }

  // ---------------------------------------------------------------- card
  function itemTable(rows, col, hl) {
    var tbl = el("table"), body = el("tbody");
    headRow(tbl, ["#", W.item, "id", col === 2 ? "count" : "strength", "", col === 2 ? "strength" : "count", "lift"]);
    var mx = rows.reduce(function (a, r) { return Math.max(a, r[col] || 0); }, 0) || 1;
    rows.forEach(function (r, k) {
      var tr = el("tr", r[0] === hl ? "hit" : null);
      tr.setAttribute("data-item", String(r[0]));
      tr.appendChild(td(k + 1, "num"));
      tr.appendChild(td(title(r[0]), "movie-title"));
      tr.appendChild(td(r[0], "num item-id"));
      tr.appendChild(td(fmt(r[col], 2), "num"));
      tr.appendChild(tdBar((r[col] || 0) / mx));
      tr.appendChild(td(fmt(r[col === 2 ? 3 : 2], 2), "num"));
      tr.appendChild(td(fmt(r[4], 1), "num"));
      body.appendChild(tr);
    });
    tbl.appendChild(body);
    return tbl;
  }
  function enrichTable(rows, label) {
    var tbl = el("table"), body = el("tbody");
    headRow(tbl, [label === "decade" ? "decade" : W.genre, "share of top slots (| = all histories)", "top", "all", "log2 OR"]);
    rows.forEach(function (r) {
      var tr = el("tr");
      var nameTxt = typeof r[0] === "number" && label === "decade" ? r[0] + "s" : (label === "genre" ? D.genres[r[0]] : r[0]);
      var c0 = td(nameTxt);
      if (r[4]) { c0.appendChild(document.createTextNode(" ")); c0.appendChild(el("span", "sig", "*")); }
      tr.appendChild(c0);
      var cb = el("td"); cb.appendChild(bar(r[1], r[2])); tr.appendChild(cb);
      tr.appendChild(td(pct(r[1], 0), "num"));
      tr.appendChild(td(pct(r[2], 0), "num"));
      tr.appendChild(td(fmt(r[3], 2), "num"));
      body.appendChild(tr);
    });
    tbl.appendChild(body);
    return tbl;
  }
  function section(parent, id, heading, content, empty) {
    var wrap = el("div");
    wrap.id = id;
    wrap.appendChild(el("h3", null, heading));
    if (content) wrap.appendChild(content); else wrap.appendChild(el("p", "note", empty || "none"));
    parent.appendChild(wrap);
    return wrap;
  }
  function openCard(j, hl, fromProfile) {
    var l = LAT[j];
    if (!l) return false;
    highlightItem = (hl === undefined) ? null : hl;
    Array.prototype.forEach.call(document.querySelectorAll(".result"), function (r) {
      r.classList.toggle("active", r.getAttribute("data-latent") === String(j));
    });
    var card = $("card");
    clear(card);
    card.setAttribute("data-latent", String(j));
    cardHeader(card, l, j, fromProfile);
    cardStats(card, l);
    if (D.score_cols.length) cardScores(card, l);
    cardItems(card, l);
    cardPromoted(card, l);
    cardSteering(card, l);
    if (PG) cardToPlayground(card, j);
    showPane("card");
    return true;
  }
  function cardHeader(card, l, j, fromProfile) {   // back button, title, labeler, description, flags
    if (fromProfile) {
      var back = el("button", "back", "\u2190 back to " + $("profile-title").textContent);
      back.id = "card-back";
      back.type = "button";
      back.addEventListener("click", function () { showPane("profile"); });
      card.appendChild(back);
    }
    var h = el("h2"); h.id = "card-title";
    h.appendChild(document.createTextNode("Latent " + j + " \u2014 " + name(j)));
    card.appendChild(h);
    var who = el("div"); who.id = "card-labeler";
    who.textContent = "label by " + (l.lb || (l.nm ? "dictionary table" : "nobody (no label)"));
    card.appendChild(who);
    var desc = el("p"); desc.id = "card-desc"; desc.textContent = l.ds || "";
    card.appendChild(desc);
    var flags = el("div"); flags.id = "card-flags";
    if (D.has_stats && !(l.nf > 0)) flags.appendChild(el("span", "flag dead", "dead (never fires)"));
    if (l.gen) flags.appendChild(el("span", "flag generic", "generic"));
    if (l.pop) flags.appendChild(el("span", "flag popularity", "popularity"));
    if (l.io !== undefined && l.io !== null && l.io < D.io_disagree)
      flags.appendChild(el("span", "flag sides", "input \u2260 output: " + fmt(l.io * 20, 0) +
                           " of its top 20 items by activation are among the 20 it promotes"));
    card.appendChild(flags);
  }
  function cardStats(card, l) {   // firing frequency, activations, popularity, coverage
    var st = el("div"); st.id = "card-stats";
    var parts = [];
    if (l.f !== undefined) parts.push("fires on " + pct(l.f, 2) + " of histories" + (l.nf !== undefined ? " (" + l.nf + ")" : ""));
    if (l.ma !== undefined) parts.push("mean activation " + fmt(l.ma, 3) + ", max " + fmt(l.mx, 3));
    if (l.pp !== undefined) parts.push("popularity percentile " + fmt(l.pp, 0) + " (50 = typical)");
    if (l.sp !== undefined) parts.push("Spearman with popularity " + fmt(l.sp, 2));
    if (l.cov !== undefined) parts.push("coverage " + pct(l.cov));
    st.textContent = parts.join(" \u00b7 ");
    card.appendChild(st);
  }
  function cardScores(card, l) {
    var tbl = null;
    if (l.sc) {  // name/value chips that wrap (balanced accuracy >= 0.8 in green)
      tbl = el("div", "score-grid");
      D.score_cols.forEach(function (c, k) {
        var v = l.sc[k], chip = el("span", "score");
        chip.appendChild(el("span", "k", c));
        var val = el("span", "v", fmt(v, 3));
        if (/^bal_acc/.test(c) && v !== null && v >= 0.8) val.className += " good";
        val.setAttribute("data-score", c);
        chip.appendChild(val);
        tbl.appendChild(chip);
      });
    }
    section(card, "card-scores", "Scores", tbl, "no score for this latent");
  }
  function cardItems(card, l) {   // top items by count and by strength, genre and decade mix
    var it = l.it || [];
    var cols = el("div", "cols");
    var byCount = it.slice().sort(function (a, b) { return (b[2] - a[2]) || (b[3] - a[3]) || (a[1] - b[1]); }).slice(0, 20);
    var byStr = it.slice().sort(function (a, b) { return (b[3] - a[3]) || (b[2] - a[2]) || (a[1] - b[1]); }).slice(0, 20);
    section(cols, "card-top-count", "Top " + W.items + " by activation count", it.length ? itemTable(byCount, 2, highlightItem) : null);
    section(cols, "card-top-strength", "Top " + W.items + " by strength", it.length ? itemTable(byStr, 3, highlightItem) : null);
    card.appendChild(cols);
    var cols2 = el("div", "cols");
    section(cols2, "card-genres", cap(W.genre) + " mix (* = significantly enriched)",
            (l.ge && l.ge.length) ? enrichTable(l.ge, "genre") : null);
    if (HAS_DECADES) section(cols2, "card-decades", "Decade mix", (l.de && l.de.length) ? enrichTable(l.de, "decade") : null);
    card.appendChild(cols2);
  }
  function cardPromoted(card, l) {   // the output side
    var pr = null;
    if (l.pr && l.pr.length) {
      pr = el("ol"); pr.className = "promoted";
      l.pr.forEach(function (r) {
        var li = el("li", null, title(r[0]));
        li.appendChild(el("span", "why", "id " + r[0] + ", score " + fmt(r[1], 3)));
        pr.appendChild(li);
      });
    }
    section(card, "card-promoted", "Promoted " + W.items + " (output side: turning the latent up pushes these)", pr,
            "no promoted-items table given");
  }
  function cardSteering(card, l) {
    var sv = null;
    if (l.st) {  // precomputed: one example user's top 10 before and after steering this latent alone
      sv = el("div", "cols");
      [["before", l.st.bf], ["after steering", l.st.af]].forEach(function (p) {
        var box = el("div"), ol = el("ol"), was = {};
        box.appendChild(el("h4", null, p[0]));
        l.st.bf.forEach(function (i) { was[i] = true; });
        p[1].forEach(function (i) {
          var li = el("li", (p[0] !== "before" && !was[i]) ? "steered-new" : null, title(i));
          if (itemNote(i)) li.appendChild(el("span", "why", itemNote(i)));
          ol.appendChild(li);
        });
        box.appendChild(ol);
        sv.appendChild(box);
      });
    }
    if (HAS_STEER) section(card, "card-steering", "Steering: the top 10 of user " + (l.st ? l.st.u : "") + "'s last test instance (the steering card's instance too) before and after adding this latent's direction (" +
            (l.st ? fmt(l.st.b, 2) : "") + " \u00d7 median \u2016h_u\u2016)", sv, "no steering example for this latent");
  }
  function cardToPlayground(card, j) {
    var b = el("button", "back", "steer with this concept in the playground");
    b.id = "card-playground";
    b.type = "button";
    b.addEventListener("click", function () { PG.addConcept(j); openPlayground(); });
    card.appendChild(b);
  }

  // ---------------------------------------------------------------- user / item profiles (main pane)
  function profile(heading, rows, note) {
    $("profile-title").textContent = heading;
    $("profile-note").textContent = note || "";
    var ol = $("profile-rows");
    clear(ol);
    var mx = rows.reduce(function (a, r) { return Math.max(a, Math.abs(r.v || 0)); }, 0) || 1;
    var inBg = false;
    rows.forEach(function (r) {
      if (r.bg && !inBg) {   // specific concepts first; the generic ones follow as their own group
        inBg = true;
        ol.appendChild(el("li", "profile-group", "Background: generic concepts (fire on a large share of all histories)"));
      }
      var li = el("li", r.bg ? "profile-row background" : "profile-row");
      li.setAttribute("data-latent", String(r.j));
      li.tabIndex = 0;
      li.appendChild(el("span", "rid", "#" + r.j));
      li.appendChild(el("span", "rlabel", name(r.j)));
      li.appendChild(el("span", "why", r.why));
      li.appendChild(bar(Math.abs(r.v || 0) / mx, null, (r.v || 0) < 0));
      li.addEventListener("click", function () { openCard(r.j, r.item, true); });
      li.addEventListener("keydown", function (ev) { if (ev.key === "Enter") openCard(r.j, r.item, true); });
      ol.appendChild(li);
    });
    showPane("profile");
  }
  function hideProfile() { if (!$("profile").hidden) showPane(null); }
  function showUser(raw) {
    var u = String(raw || "").trim();
    if (!u) { hideProfile(); return; }
    var rows = D.users[u];
    if (!rows) { profile("User " + u, [], Object.keys(D.users).length ? "no such user" : "no user table given"); return; }
    profile("User " + u + ": top concepts", rows.map(function (r) {
      return { j: r[0], v: r[1], bg: r[2] === 1, why: "activation " + fmt(r[1], 3) };
    }));
  }
  function showMovieProfile(i) {
    var rows = D.movies[String(i)], head = title(i) + " (id " + i + ")", extra = itemNote(i);
    if (rows) {
      profile(head + ": top concepts by total strength", rows.map(function (r) {
        return { j: r[0], v: r[1], item: i, bg: r[3] === 1, why: "strength " + fmt(r[1], 2) + (r[2] !== null && r[2] !== undefined ? " (" + pct(r[2]) + " of the " + W.item + "'s total)" : "") };
      }), extra);
    } else {
      profile(head + ": concepts whose top " + W.items + " include it", (HITS[i] || []).map(function (h) {
        return { j: h.j, v: h.strength, item: i, why: "rank " + h.rank + ", count " + fmt(h.count) + ", strength " + fmt(h.strength, 2) };
      }), (extra ? extra + " \u00b7 " : "") + "no " + W.item + "\u2192concept table given; showing the concept dictionaries instead");
    }
  }
  function showMovie(raw) {
    var q = norm(raw || "");
    if (!q) { hideProfile(); return; }
    var ms = matchTitles(q, true);
    if (!ms.length) { profile("No " + W.item + " matches \u201c" + String(raw).trim() + "\u201d", []); return; }
    if (ms[0][1] === 0 || ms.length === 1) { showMovieProfile(ms[0][0]); return; }
    profile(ms.length + " " + W.items + " match \u201c" + String(raw).trim() + "\u201d", [], "pick one:");
    var ol = $("profile-rows");
    ms.slice(0, 30).forEach(function (t) {
      var li = el("li", "movie-choice", title(t[0]));
      li.appendChild(el("span", "why", "id " + t[0]));
      li.setAttribute("data-item", String(t[0]));
      li.tabIndex = 0;
      li.addEventListener("click", function () { showMovieProfile(t[0]); });
      li.addEventListener("keydown", function (ev) { if (ev.key === "Enter") showMovieProfile(t[0]); });
      ol.appendChild(li);
    });
  }

  // ---------------------------------------------------------------- the steering playground (playground.js)
  function openPlayground(user) {
    showPane("playground");
    if (user) { $("pg-user").value = user; PG.pickUser(user); }
  }

  // ---------------------------------------------------------------- wiring
  function showMeta() {
    $("page-title").textContent = D.title;
    document.title = D.title;
    $("meta").textContent = D.n_latents + " latents (" + D.n_live + " live) \u00b7 " +
      D.n_items + " " + W.items + " \u00b7 " + Object.keys(D.users).length + " users" +
      (D.score_cols.length ? " \u00b7 scores: " + D.score_cols.slice(0, 4).join(", ") : "");
    $("search").placeholder = "label words, latent id, or a " + W.item + " id or title";
    $("movie-q").placeholder = W.item + " id or title";
  }
  function wireInputs() {
    var s = $("search");
    s.addEventListener("input", function () { showResults(s.value); });
    s.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { showResults(s.value); openFirst(); } });
    $("user-q").addEventListener("input", function () { showUser($("user-q").value); });
    $("movie-q").addEventListener("input", function () { showMovie($("movie-q").value); });
    if (PG) {
      $("pg-panel").hidden = false;
      $("pg-open").addEventListener("click", function () { openPlayground(); });
    }
    window.addEventListener("hashchange", fromHash);
  }
  function fromHash() {   // #q=, #latent=, #user=, #playground=, #item= (or #movie=): as if typed
    var h = location.hash.replace(/^#/, "");
    if (!h) return;
    var p = new URLSearchParams(h);
    if (p.has("q")) { $("search").value = p.get("q"); showResults(p.get("q")); openFirst(); }
    if (p.has("latent")) openCard(Number(p.get("latent")));
    if (p.has("user")) { $("user-q").value = p.get("user"); showUser(p.get("user")); }
    if (p.has("playground") && PG) openPlayground(p.get("playground"));
    if (p.has("item") || p.has("movie")) {
      var v = p.has("item") ? p.get("item") : p.get("movie");
      $("movie-q").value = v;
      showMovie(v);
    }
  }
})();
