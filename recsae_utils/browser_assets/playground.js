// The steering playground (recsae_utils/playground.py writes its data, D.pg): redoes interventions.recommend
// in the page. h' = h + dose * median||h_u|| * W_dec[j] / ||W_dec[j]|| per chosen concept j; scores h' . E
// for every item; the user's known items (or the typed history) and item 0 are masked; top 10 best first.
// A typed history gets its h_u from SASRec's forward pass (model.SASRec.states, slot 0) run here.
var recsaePlayground = (function () {
  "use strict";
  var K = 10, DOSE_MIN = -3, DOSE_MAX = 3, DOSE_STEP = 0.05, LN_EPS = 1e-5;

  // ---------------------------------------------------------------- arrays from base64
  function bytes(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k);
    return out;
  }
  var HALF = null;   // float16 bit pattern -> value
  function halfTable() {
    if (HALF) return HALF;
    HALF = new Float64Array(65536);
    for (var b = 0; b < 65536; b++) {
      var s = (b & 0x8000) ? -1 : 1, e = (b >> 10) & 0x1f, f = b & 0x3ff;
      HALF[b] = e === 0 ? s * f * Math.pow(2, -24) : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * Math.pow(2, e - 15);
    }
    return HALF;
  }
  function f16(b64) {
    var u = bytes(b64), v = new DataView(u.buffer), t = halfTable(), out = new Float64Array(u.length / 2);
    for (var k = 0; k < out.length; k++) out[k] = t[v.getUint16(2 * k, true)];
    return out;
  }
  function f32(b64) {
    var u = bytes(b64), v = new DataView(u.buffer), out = new Float64Array(u.length / 4);
    for (var k = 0; k < out.length; k++) out[k] = v.getFloat32(4 * k, true);
    return out;
  }
  function uint(b64, wide) {
    var u = bytes(b64), v = new DataView(u.buffer), w = wide ? 4 : 2, out = new Float64Array(u.length / w);
    for (var k = 0; k < out.length; k++) out[k] = wide ? v.getUint32(4 * k, true) : v.getUint16(2 * k, true);
    return out;
  }

  // ---------------------------------------------------------------- the model side
  function Model(P) {
    var d = P.d, E = f16(P.E), W = f16(P.W), H = f16(P.H);
    var counts = uint(P.counts, P.wide), gaps = uint(P.gaps, P.wide), start = [0];
    for (var u = 0; u < counts.length; u++) start.push(start[u] + counts[u]);
    var row = {};
    P.users.forEach(function (id, r) { row[id] = r; });
    var S = P.sasrec ? sasrecWeights(P.sasrec) : null;
    return { d: d, nItems: P.n_items, m: P.m, hNorm: P.h_norm, E: E, W: W, H: H, counts: counts, gaps: gaps,
             start: start, row: row, sasrec: S };
  }
  function sasrecWeights(S) {
    return { L: S.L, heads: S.heads, d: S.d, pos: f32(S.pos), blocks: S.blocks.map(function (b) {
      var o = {};
      Object.keys(b).forEach(function (k) { o[k] = f32(b[k]); });
      return o;
    }) };
  }
  function userVector(M, id) {    // {h, seen} of a user's last held-out instance, or null
    var r = M.row[id];
    if (r === undefined) return null;
    var h = M.H.slice(r * M.d, (r + 1) * M.d), seen = [], it = 0;
    for (var k = M.start[r]; k < M.start[r + 1]; k++) { it += M.gaps[k]; seen.push(it); }
    return { h: h, seen: seen };
  }
  function linear(x, n, Wt, b, d) {   // x (n, d) -> x W^T + b, W (out=d, in=d)
    var out = new Float64Array(n * d);
    for (var i = 0; i < n; i++) for (var o = 0; o < d; o++) {
      var s = b[o];
      for (var c = 0; c < d; c++) s += x[i * d + c] * Wt[o * d + c];
      out[i * d + o] = s;
    }
    return out;
  }
  function layerNorm(x, n, w, b, d) {
    var out = new Float64Array(n * d);
    for (var i = 0; i < n; i++) {
      var mu = 0, v = 0, c;
      for (c = 0; c < d; c++) mu += x[i * d + c];
      mu /= d;
      for (c = 0; c < d; c++) v += (x[i * d + c] - mu) * (x[i * d + c] - mu);
      var sd = Math.sqrt(v / d + LN_EPS);
      for (c = 0; c < d; c++) out[i * d + c] = (x[i * d + c] - mu) / sd * w[c] + b[c];
    }
    return out;
  }
  function attention(x, n, blk, valid, heads, d) {   // slot i attends slots j >= i that hold an item
    var q = linear(x, n, blk["q.weight"], blk["q.bias"], d), k = linear(x, n, blk["k.weight"], blk["k.bias"], d),
        v = linear(x, n, blk["v.weight"], blk["v.bias"], d), dh = d / heads, out = new Float64Array(n * d);
    for (var hd = 0; hd < heads; hd++) for (var i = 0; i < n; i++) {
      var a = [], mx = -Infinity, j, c;
      for (j = i; j < n; j++) {
        if (!valid[j]) { a.push(-Infinity); continue; }
        var s = 0;
        for (c = hd * dh; c < (hd + 1) * dh; c++) s += q[i * d + c] * k[j * d + c];
        s /= Math.sqrt(dh);
        a.push(s);
        if (s > mx) mx = s;
      }
      if (mx === -Infinity) continue;   // no key: zero (torch's nan_to_num)
      var z = 0;
      for (j = 0; j < a.length; j++) { a[j] = Math.exp(a[j] - mx); z += a[j]; }
      for (j = i; j < n; j++) for (c = hd * dh; c < (hd + 1) * dh; c++) out[i * d + c] += a[j - i] / z * v[j * d + c];
    }
    return out;
  }
  function block(x, n, blk, valid, heads, d) {   // ctx = LN1(attn + x); out = LN2(FF2(relu(FF1(ctx))) + ctx)
    var a = attention(x, n, blk, valid, heads, d), c;
    for (c = 0; c < n * d; c++) a[c] += x[c];
    var ctx = layerNorm(a, n, blk["ln1.weight"], blk["ln1.bias"], d);
    var f = linear(ctx, n, blk["ff1.weight"], blk["ff1.bias"], d);
    for (c = 0; c < f.length; c++) f[c] = Math.max(0, f[c]);
    var g = linear(f, n, blk["ff2.weight"], blk["ff2.bias"], d);
    for (c = 0; c < g.length; c++) g[c] += ctx[c];
    return layerNorm(g, n, blk["ln2.weight"], blk["ln2.bias"], d);
  }
  function historyVector(M, items) {   // items oldest first -> h_u (SASRec's output at the latest slot)
    var S = M.sasrec, d = M.d, hist = items.slice(-S.L).reverse(), n = hist.length, x = new Float64Array(n * d);
    var valid = hist.map(function (i) { return i > 0; });
    for (var j = 0; j < n; j++) for (var c = 0; c < d; c++) {
      x[j * d + c] = M.E[hist[j] * d + c] + S.pos[(valid[j] ? j + 1 : 0) * d + c];
    }
    S.blocks.forEach(function (blk) { x = block(x, n, blk, valid, S.heads, d); });
    return { h: x.slice(0, d), seen: items.slice() };
  }

  // ---------------------------------------------------------------- the edit, the ranking, the KL
  function steer(M, h, doses) {   // doses: {latent: multiple of median ||h_u||}
    var out = Float64Array.from(h), d = M.d;
    Object.keys(doses).forEach(function (j) {
      var b = doses[j], nr = 0, c;
      if (!b) return;
      for (c = 0; c < d; c++) nr += M.W[j * d + c] * M.W[j * d + c];
      nr = Math.max(Math.sqrt(nr), 1e-12);   // F.normalize's floor
      for (c = 0; c < d; c++) out[c] += M.hNorm * b * M.W[j * d + c] / nr;
    });
    return out;
  }
  function scores(M, h, seen) {
    var s = new Float64Array(M.nItems), d = M.d;
    for (var i = 0; i < M.nItems; i++) {
      var t = 0;
      for (var c = 0; c < d; c++) t += h[c] * M.E[i * d + c];
      s[i] = t;
    }
    s[0] = -Infinity;
    seen.forEach(function (i) { s[i] = -Infinity; });
    return s;
  }
  function top(s, k) {
    var idx = [];
    for (var i = 0; i < s.length; i++) if (s[i] > -Infinity) idx.push(i);
    idx.sort(function (a, b) { return (s[b] - s[a]) || (a - b); });
    return idx.slice(0, k);
  }
  function rankIn(s, i) {   // 1 + #items scoring strictly higher (interventions.recommend's rank_before)
    var r = 1;
    for (var k = 0; k < s.length; k++) if (s[k] > s[i]) r++;
    return r;
  }
  function logSumExp(s) {
    var mx = -Infinity, z = 0, i;
    for (i = 0; i < s.length; i++) if (s[i] > mx) mx = s[i];
    for (i = 0; i < s.length; i++) if (s[i] > -Infinity) z += Math.exp(s[i] - mx);
    return mx + Math.log(z);
  }
  function kl(s0, s1) {   // KL(softmax(s0) || softmax(s1)) over the unmasked items
    var l0 = logSumExp(s0), l1 = logSumExp(s1), out = 0;
    for (var i = 0; i < s0.length; i++) {
      if (s0[i] === -Infinity) continue;
      var lp = s0[i] - l0;
      out += Math.exp(lp) * (lp - (s1[i] - l1));
    }
    return Math.max(0, out);
  }
  function recommend(M, base, doses) {   // {before, after: [item], from: [rank before], kl}
    var s0 = scores(M, base.h, base.seen), h1 = steer(M, base.h, doses), s1 = scores(M, h1, base.seen);
    var after = top(s1, K);
    return { before: top(s0, K), after: after, from: after.map(function (i) { return rankIn(s0, i); }), kl: kl(s0, s1), h: h1 };
  }

  // ---------------------------------------------------------------- the pane
  function init(D, ui) {
    var P = D.pg, M = null, $ = ui.$, el = ui.el, clear = ui.clear;
    var state = { user: null, history: [], doses: {}, base: null, last: null };
    function model() { if (!M) M = Model(P); return M; }

    function setNote(text, cls) { var n = $("pg-status"); n.textContent = text; n.className = cls || "note"; }
    function describeBase() {
      if (state.history.length) return "typed history of " + state.history.length + " " + ui.words.items;
      return state.user === null ? "" : "user " + state.user;
    }
    function rebase() {
      var Mo = model();
      state.base = null;
      if (state.history.length) {
        if (!Mo.sasrec) { setNote("this page carries no SASRec weights: pick a user instead", "error"); return refresh(); }
        state.base = historyVector(Mo, state.history);
      } else if (state.user !== null) {
        state.base = userVector(Mo, state.user);
        if (!state.base) { setNote("user " + state.user + " is not in the playground's sample (" + P.users.length + " of " + P.n_users_all + " users; e.g. " + P.users.slice(0, 5).join(", ") + ")", "error"); return refresh(); }
      }
      setNote(state.base ? "the top 10 of " + describeBase() : "pick a user or type a history", "note");
      refresh();
    }
    function refresh() {
      var out = $("pg-out");
      clear(out);
      $("pg-kl").textContent = "";
      state.last = null;
      if (!state.base) return;
      var r = recommend(model(), state.base, state.doses);
      state.last = r;
      $("pg-kl").textContent = "KL(before \u2016 after) = " + r.kl.toPrecision(3) + " nats";
      out.appendChild(resultTable(r));
    }
    function resultTable(r) {
      var tbl = el("table"), body = el("tbody"), was = {};
      r.before.forEach(function (i) { was[i] = true; });
      var tr = el("tr");
      ["#", "after", ui.words.genres, "came from rank", "before"].forEach(function (c) { tr.appendChild(el("th", null, c)); });
      var th = el("thead"); th.appendChild(tr); tbl.appendChild(th);
      r.after.forEach(function (i, k) {
        var row = el("tr", was[i] ? null : "pg-new");
        row.setAttribute("data-item", String(i));
        row.appendChild(el("td", "num", k + 1));
        row.appendChild(el("td", null, ui.title(i)));
        row.appendChild(el("td", "pg-genre", ui.itemNote(i)));
        var moved = r.from[k] - (k + 1);
        row.appendChild(el("td", "num pg-from", r.from[k] + (moved > 0 ? " (\u2191" + moved + ")" : moved < 0 ? " (\u2193" + (-moved) + ")" : "")));
        var b = el("td", "pg-before", ui.title(r.before[k]));
        b.setAttribute("data-item", String(r.before[k]));
        row.appendChild(b);
        body.appendChild(row);
      });
      tbl.appendChild(body);
      tbl.id = "pg-top";
      return tbl;
    }

    function pickable(li, pick) {   // a list entry picked by a click or Enter
      li.tabIndex = 0;
      li.addEventListener("click", pick);
      li.addEventListener("keydown", function (ev) { if (ev.key === "Enter") pick(); });
      return li;
    }

    // who: a user id, or a typed history
    function pickUser(raw) {
      var t = String(raw || "").trim();
      state.user = /^\d+$/.test(t) ? Number(t) : null;
      if (state.user !== null) { state.history = []; drawHistory(); }
      rebase();
    }
    function addItem(i) {
      if (state.history.indexOf(i) < 0) state.history.push(i);
      if (model().sasrec && state.history.length > model().sasrec.L) state.history.shift();
      state.user = null;
      $("pg-user").value = "";
      $("pg-item-q").value = "";
      clear($("pg-item-hits"));
      drawHistory();
      rebase();
    }
    function drawHistory() {
      var ol = $("pg-history");
      clear(ol);
      state.history.forEach(function (i, k) {
        var li = el("li", "pg-hist-item", ui.title(i));
        li.setAttribute("data-item", String(i));
        var x = el("button", "back", "\u00d7");
        x.type = "button";
        x.title = "remove";
        x.addEventListener("click", function () { state.history.splice(k, 1); drawHistory(); rebase(); });
        li.appendChild(x);
        ol.appendChild(li);
      });
    }
    function itemHits(raw) {
      var ol = $("pg-item-hits"), q = ui.norm(raw || "");
      clear(ol);
      if (!q) return;
      ui.matchTitles(q, false).slice(0, 12).forEach(function (t) {
        var li = el("li", "movie-choice", ui.title(t[0]));
        li.setAttribute("data-item", String(t[0]));
        li.appendChild(el("span", "why", ui.itemNote(t[0])));
        ol.appendChild(pickable(li, function () { addItem(t[0]); }));
      });
    }

    // which concepts, how hard
    function conceptHits(raw) {
      var ol = $("pg-concept-hits");
      clear(ol);
      if (!String(raw || "").trim()) return;
      ui.search(raw).slice(0, 12).forEach(function (r) {
        var li = el("li", "result", "#" + r.j + " " + ui.name(r.j));
        li.setAttribute("data-latent", String(r.j));
        ol.appendChild(pickable(li, function () { addConcept(r.j); }));
      });
    }
    function addConcept(j) {
      if (!(j in state.doses)) state.doses[j] = 0;
      $("pg-concept-q").value = "";
      clear($("pg-concept-hits"));
      drawSliders();
      refresh();
    }
    function drawSliders() {
      var box = $("pg-sliders");
      clear(box);
      Object.keys(state.doses).forEach(function (j) {
        var row = el("div", "pg-slider"), input = el("input"), val = el("span", "pg-dose");
        row.setAttribute("data-latent", j);
        var nm = el("span", "pg-name", "#" + j + " " + ui.name(Number(j)));
        nm.title = nm.textContent;
        row.appendChild(nm);
        input.type = "range";
        input.min = DOSE_MIN; input.max = DOSE_MAX; input.step = DOSE_STEP;
        input.value = state.doses[j];
        val.textContent = doseText(state.doses[j]);
        input.addEventListener("input", function () {
          state.doses[j] = Number(input.value);
          val.textContent = doseText(state.doses[j]);
          refresh();
        });
        var x = el("button", "back", "\u00d7");
        x.type = "button";
        x.title = "remove this concept";
        x.addEventListener("click", function () { delete state.doses[j]; drawSliders(); refresh(); });
        row.appendChild(input); row.appendChild(val); row.appendChild(x);
        box.appendChild(row);
      });
    }
    function doseText(b) { return (b >= 0 ? "+" : "") + Number(b).toFixed(2) + " \u00d7 median\u2016h\u2016"; }
    function reset() {
      Object.keys(state.doses).forEach(function (j) { state.doses[j] = 0; });
      drawSliders();
      refresh();
    }

    $("pg-user").placeholder = "user id (e.g. " + P.users.slice(0, 3).join(", ") + ")";
    $("pg-user").addEventListener("input", function () { pickUser($("pg-user").value); });
    $("pg-item-q").placeholder = ui.words.item + " title or id, then pick it";
    $("pg-item-q").addEventListener("input", function () { itemHits($("pg-item-q").value); });
    $("pg-concept-q").addEventListener("input", function () { conceptHits($("pg-concept-q").value); });
    $("pg-reset").addEventListener("click", reset);
    $("pg-about").textContent = P.users.length + " of " + P.n_users_all + " users can be picked by id; any " +
      (P.sasrec ? "typed history (up to " + P.sasrec.L + " " + ui.words.items + ", oldest first) runs through SASRec here. " : "") +
      "A dose is a multiple of the median \u2016h_u\u2016 (" + P.h_norm.toPrecision(3) + "); known " + ui.words.items + " are masked.";
    return {
      state: state, pickUser: pickUser, addItem: addItem, addConcept: addConcept, reset: reset,
      setDose: function (j, b) { state.doses[j] = b; drawSliders(); refresh(); },
      h: function () { return state.base ? Array.from(state.base.h) : null; },
      result: function () { return state.last ? { before: state.last.before, after: state.last.after, from: state.last.from, kl: state.last.kl } : null; }
    };
  }
  return { init: init };
})();
