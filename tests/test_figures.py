"""Paper figures on a small synthetic concept dictionary: each returns a Figure with the expected axes and
artists, and saves as PNG + PDF through reports.save_figure."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from recsae_utils import cards as crd, detection as det, dictionary as dic, explain as xpl, reports  # noqa: E402
from recsae_utils.figures import concepts as F, interventions as FI, training as T  # noqa: E402

M, K = 6, 3


@pytest.fixture(scope="module")
def world(tiny_ds, tiny_inst):
    tr = tiny_inst["train"]
    rng = np.random.default_rng(1)
    n = len(tr)
    idx = np.stack([rng.choice(M, K, replace=False) for _ in range(n)])
    val = (rng.exponential(1.0, (n, K)) * (rng.random((n, K)) < 0.7)).astype(np.float32)
    idx[:, 0] = np.where(tr.hist[:, 0] % 2 == 0, 0, idx[:, 0])   # latent 0 tracks even last items
    idx[:, 1:] = np.where(idx[:, 1:] == 0, M - 1, idx[:, 1:]) if M > K else idx[:, 1:]
    val[tr.hist[:, 0] % 2 == 0, 0] = 3.0
    d = dic.build_dictionaries(idx, val, tr.hist, tiny_ds.items, m=M, top_n=30)
    cards = crd.latent_cards(d)
    labels = pd.DataFrame([{"latent": c["latent"], **crd.offline_label(c), "labeler": "offline-metadata"} for c in cards])
    ic = xpl.instance_concepts(idx, val, labels=labels.set_index("latent")["name"].to_dict(), top=K, m=M)
    ic["user"] = tr.user[ic["instance"].to_numpy()]
    it = xpl.item_concepts(idx, val, tr.hist, d.n_items, top=4, m=M)
    return dict(d=d, labels=labels, ic=ic, it=it, items=tiny_ds.items)


def _saved(fig, tmp_path, name):
    png = reports.save_figure(fig, tmp_path, name)
    assert png.exists() and png.stat().st_size > 1000
    assert png.with_suffix(".pdf").exists() and png.with_suffix(".pdf").stat().st_size > 1000
    plt.close(fig)


def _bars(ax):
    return [p for p in ax.patches if p.get_height() > 0 and p.get_width() > 0]


def test_concept_card(world, tmp_path):
    d, labels = world["d"], world["labels"]
    scores = pd.DataFrame({"latent": [0], "bal_acc_random": [0.83], "auc_random": [0.91]})
    fig = F.concept_card(d, 0, label=labels, scores=scores, top=7)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    ax_c, ax_s, ax_g, ax_d = fig.axes
    n_rows = d.tables.ptr[1] - d.tables.ptr[0]
    assert len(ax_c.patches) == min(7, n_rows) == len(ax_s.patches)
    assert [t.get_text() for t in ax_c.get_yticklabels()][0]          # titles on the bars
    assert any(t.get_text().startswith("lift ") for t in ax_s.texts)
    assert len(ax_g.patches) >= 2 and len(ax_d.patches) >= 2           # paired bars
    title = fig._suptitle.get_text()
    name = labels.set_index("latent").loc[0, "name"]
    assert title.startswith(f"Latent 0: {name[:20]}") and "bal. acc. 0.83" in title and "ROC-AUC 0.91" in title
    _saved(fig, tmp_path, "card")
    # a plain string label, no scores
    fig = F.concept_card(d, 1, label="my label", top=3)
    assert fig._suptitle.get_text().startswith("Latent 1: my label") and len(fig.axes[0].patches) <= 3
    plt.close(fig)


def test_enrichment_heatmap(world, tmp_path):
    d = world["d"]
    lat = [0, 1, 2, 3]
    fig = F.enrichment_heatmap(d, lat, labels=world["labels"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2             # heatmap + colour bar
    ax = fig.axes[0]
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)][0]
    n_genres = int((d.feats.kind == "genre").sum())
    assert mesh.get_array().shape == (len(lat), n_genres)
    lo, hi = mesh.get_clim()
    assert lo == pytest.approx(-hi) and hi >= 1                      # centred at 0
    assert mesh.get_cmap().name == "RdBu_r"
    assert len(ax.get_yticklabels()) == len(lat) and ax.get_yticklabels()[0].get_text().startswith("0: ")
    _saved(fig, tmp_path, "heatmap")
    fig = F.enrichment_heatmap(d, lat, kind="decade")
    assert [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][0].get_array().shape[0] == len(lat)
    plt.close(fig)


def test_user_profile(world, tmp_path):
    ic = world["ic"]
    user = int(ic["user"].iloc[0])
    fig = F.user_profile(ic, user, labels=world["labels"])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    mine = ic[ic["user"] == user]
    want = mine[mine["instance"] == mine["instance"].max()].sort_values("activation", ascending=False)
    assert len(_bars(fig.axes[0])) == len(want) > 0
    assert [t.get_text().split()[0] for t in fig.axes[0].get_yticklabels()] == [f"#{j}" for j in want["latent"]]
    assert "latest instance" in fig.axes[0].get_title(loc="left")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert all(t.startswith("#") for t in labels)
    _saved(fig, tmp_path, "user")
    with pytest.raises(KeyError):
        F.user_profile(ic, -12345)


def test_movie_profile(world, tmp_path):
    it, items = world["it"], world["items"]
    title = items.loc[items["item_id"] == 3, "title"].iloc[0]
    fig = F.movie_profile(it, title, labels=world["labels"], items=items)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    want = it[it["item_id"] == 3].sort_values("strength", ascending=False)
    assert len(_bars(ax)) == len(want)
    assert [t.get_text().split()[0] for t in ax.get_yticklabels()] == [f"#{j}" for j in want["latent"]]
    assert title in ax.get_title(loc="left") and any(t.get_text().endswith("%") for t in ax.texts)
    _saved(fig, tmp_path, "movie")
    # the title without its year, in another case, and a frame with its own title column
    fig = F.movie_profile(it.merge(items[["item_id", "title"]], on="item_id"), title.split(" (")[0].upper())
    assert len(_bars(fig.axes[0])) == len(want)
    plt.close(fig)


def test_score_distributions(tmp_path):
    rng = np.random.default_rng(0)
    models = {"SAE": pd.DataFrame({"latent": range(60), "bal_acc_random": rng.beta(8, 3, 60), "auc_random": rng.beta(9, 3, 60),
                                   "has_signature": True}),
              "raw dims": pd.DataFrame({"latent": range(40), "bal_acc_random": rng.beta(5, 5, 40),
                                        "auc_random": rng.beta(5, 4, 40), "has_signature": True}),
              "random SAE": pd.DataFrame({"latent": range(50), "bal_acc_random": rng.beta(5, 5, 50),
                                          "auc_random": rng.beta(5, 5, 50), "has_signature": True})}
    fig = F.score_distributions(models, column="bal_acc_random")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax_v, ax_e = fig.axes
    ecdf = [ln for ln in ax_e.get_lines() if ln.get_gid() not in ("chance", "threshold-0.8")]
    assert len(ecdf) == 3
    assert [ln for ln in ax_v.get_lines() if ln.get_gid() == "threshold-0.8"][0].get_ydata()[0] == 0.8
    assert [ln for ln in ax_e.get_lines() if ln.get_gid() == "threshold-0.8"][0].get_xdata()[0] == 0.8
    assert [t.get_text().replace("\n", " ") for t in ax_v.get_xticklabels()] == list(models)
    assert len(fig.legends[0].get_texts()) == 4 and "balanced accuracy" in ax_e.get_xlabel()
    _saved(fig, tmp_path, "scores")
    fig = F.score_distributions({k: v.head(3) for k, v in models.items()})   # tiny groups -> boxes, AUC: no 0.8 line
    assert not [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "threshold-0.8"]
    assert len([ln for ln in fig.axes[1].get_lines() if ln.get_gid() is None]) == 3
    plt.close(fig)


def test_saved_figures_are_byte_reproducible(tmp_path):
    """Same figure, saved twice a second apart: identical PNG and PDF bytes (no creation date), so
    regenerated reports only differ where a number differs."""
    import time

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 3, 2])
    a = reports.save_figure(fig, tmp_path / "a", "f")
    time.sleep(1.1)
    b = reports.save_figure(fig, tmp_path / "b", "f")
    plt.close(fig)
    for ext in (".png", ".pdf"):
        assert a.with_suffix(ext).read_bytes() == b.with_suffix(ext).read_bytes()


LONG = ("Musical + Romance (Singin' in the Rain, An American in Paris, Gigi, Meet Me in St. Louis, "
        "The Band Wagon), 1950s releases, mid-popularity")


def _text(t) -> str:
    return t.get_text().replace("\n", " ")


def _overlap(texts) -> bool:
    boxes = [t.get_window_extent() for t in texts if t.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_label_scores_use_the_summary_rule_and_ticks_do_not_collide():
    """The legend's n is score_summary's n_scored (latents with >= 5 held-out positives), and the real
    model names fit under their violins."""
    rng = np.random.default_rng(0)
    n_pos = np.r_[np.full(30, 8), np.full(10, 2)]                  # 10 latents with too few positives
    frame = lambda: pd.DataFrame({"latent": range(40), "auc_random": rng.beta(8, 3, 40), "n_pos": n_pos,
                                  "bal_acc_random": rng.beta(8, 3, 40), "has_signature": True,
                                  "auc_matched": 0.7, "bal_acc_matched": 0.7})
    models = {"SAE": frame(), "raw h_u dimensions": frame(), "random SAE": frame()}
    fig = F.score_distributions(models, column="auc_random")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    want = det.score_summary(models["SAE"])["n_scored"]
    assert want == 30 and all(f"(n={want}," in t for t in legend)
    fig.canvas.draw()
    assert not _overlap(fig.axes[0].get_xticklabels())
    plt.close(fig)


def test_card_and_heatmap_wrap_labels_and_name_the_pool(world):
    d = world["d"]
    fig = F.concept_card(d, 0, label=LONG, top=5)
    assert LONG in fig._suptitle.get_text().replace("\n", " ")
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any("top sequences" in t for ax in fig.axes for t in [ax.get_title(loc="left")] + texts)
    pool, fires = int(d.tables.n_top[0]), int(d.stats.n_fire[0])
    assert any((f"all {pool:,}" if pool == fires else f"top {pool:,}") in t for t in texts)
    plt.close(fig)
    labels = {j: LONG for j in range(4)}
    fig = F.enrichment_heatmap(d, [0, 1, 2, 3], labels=labels)
    ax = fig.axes[0]
    assert [_text(t) for t in ax.get_yticklabels()] == [f"{j}: {LONG}" for j in range(4)]
    assert "top sequences" not in ax.get_title(loc="left") and "firings" in ax.get_title(loc="left")
    fig.canvas.draw()
    assert not _overlap(ax.get_yticklabels())
    plt.close(fig)


def test_profiles_wrap_labels(world):
    ic = world["ic"]
    user = int(ic["user"].iloc[0])
    fig = F.user_profile(ic, user, labels={j: LONG for j in range(M)})
    ticks = [_text(t) for t in fig.axes[0].get_yticklabels()]
    assert all(t.endswith(LONG) and "\u2026" not in t for t in ticks)
    fig.canvas.draw()
    assert not _overlap(fig.axes[0].get_yticklabels())
    plt.close(fig)
    it, items = world["it"], world["items"]
    fig = F.movie_profile(it, 3, labels={j: LONG for j in range(M)}, items=items)
    assert all(_text(t).endswith(LONG) for t in fig.axes[0].get_yticklabels())
    plt.close(fig)


def _ev():
    from recsae_utils.metrics import TOPK
    base = {f"{m}@{k}": 0.05 + 0.01 * k / 10 for k in TOPK for m in ("HR", "NDCG")}
    freq = np.r_[np.zeros(3), np.geomspace(1e-4, 0.3, 61)]
    return {"sasrec": {"test": base},
            "main": {"test": {k: v * 0.98 for k, v in base.items()}, "freq": freq,
                     "health": {"dead_window_samples": 10_000}},
            "random": {"test": {k: v * 0.8 for k, v in base.items()}, "freq": freq[3:],
                       "health": {"dead_window_samples": 10_000}}}


def test_sasrec_vs_recsae_shows_the_ratio():
    ev = _ev()
    fig = T.plot_metrics_across_k(ev)
    ax_a, ax_r = fig.axes
    ratio = {ln.get_gid(): ln.get_ydata() for ln in ax_r.get_lines()}
    assert np.allclose(ratio["main:NDCG"], 0.98) and np.allclose(ratio["random:HR"], 0.8)
    assert ratio["parity"][0] == 1.0 and "SASRec" in ax_r.get_ylabel()
    assert "SASRec" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)
    fig = T.plot_metrics_across_k(ev, "BPRMF")                           # another base model: its own name
    assert fig.axes[1].get_ylabel() == "RecSAE / BPRMF (test)"
    assert "BPRMF" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any("SASRec" in t.get_text() for t in fig.legends[0].get_texts())
    plt.close(fig)


def test_firing_histogram_labels_the_never_fired_bin():
    fig = T.plot_firing_histogram(_ev())
    ax = fig.axes[0]
    assert _text(ax.get_xticklabels()[0]) == "never fired"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["main (3 never fired)", "random"]
    plt.close(fig)


def test_fit_curves_have_integer_epoch_ticks():
    from types import SimpleNamespace
    hist = [{"epoch": e, "dev": {"fvu": 1 / e, "NDCG@5": 0.01 * e}} for e in (1, 2, 3)]
    fig = T.plot_fit_curves({"main": SimpleNamespace(history=hist)})
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = ax.get_xticks()
        assert len(ticks) and np.allclose(ticks, np.round(ticks))
    plt.close(fig)


def test_data_overview_history_axis_is_logarithmic():
    lengths = np.r_[np.full(500, 20), np.arange(1, 20)]
    fig = T.plot_data_overview(np.arange(100), lengths, 20)
    assert fig.axes[1].get_yscale() == "log" and fig.axes[0].get_xscale() == "log"
    assert "capped at 20" in fig.axes[1].get_xlabel()
    plt.close(fig)


def test_profiles_specific_first_background_apart(world, tmp_path):
    from matplotlib.colors import to_rgba

    from recsae_utils import specificity as spc
    d = world["d"]
    spec = spc.Specificity.of(d)
    spec.generic = np.arange(M) == 0   # latent 0 (the strongest, on every even last item) as the background
    ic = world["ic"]
    user = int(ic["user"].iloc[0])
    mine = ic[(ic["user"] == user) & (ic["instance"] == ic.loc[ic["user"] == user, "instance"].max())]
    rows = xpl.instance_concepts(np.atleast_2d(mine["latent"].to_numpy()), np.atleast_2d(mine["activation"].to_numpy()),
                                 top=K, m=M, spec=spec).assign(user=user, instance=0)
    fig = F.user_profile(rows, user)
    ax = fig.axes[0]
    panels = [a for a in fig.axes if a.get_yticklabels()]        # specific, then generic: each on its own axis
    shown = [int(t.get_text().split()[0][1:]) for a in panels for t in a.get_yticklabels()]
    want = rows.sort_values(["group", "rank"], key=lambda c: c.map({"specific": 0, "background": 1}) if c.name == "group" else c)
    assert shown == want["latent"].tolist()
    grey = [b.get_facecolor() == to_rgba(F.BASE_COLOR) for a in panels for b in _bars(a)]
    assert grey == [g == "background" for g in want["group"]]
    if any(grey):
        assert "generic background" in ax.get_title(loc="left") and grey[-1] and len(panels) == 2
    # the ranking key is shown: the title states it, each specific bar carries activation x log(1 / freq)
    assert "ranked by key = activation × log(1 / firing frequency)" in ax.get_title(loc="left")
    spec_rows = want[want["group"] == "specific"]
    texts = [t.get_text() for t in panels[0].texts]
    for (_, r), t in zip(spec_rows.iterrows(), texts):
        assert t == f"{r['activation']:.2f} · key {r['activation'] * spec.weight[int(r['latent'])]:,.1f}"
    _saved(fig, tmp_path, "user_spec")
    idx = np.stack([np.r_[0, j] for j in range(1, M)] * 4)         # item 3's sequences: latent 0 and each other
    val = np.tile([[5.0, 1.0]], (len(idx), 1))
    hist = np.full((len(idx), 1), 3)
    it = xpl.item_concepts(idx, val, hist, 4, top=3, m=M, spec=spec)
    fig = F.movie_profile(it, 3, items=world["items"])
    panels = [a for a in fig.axes if a.get_yticklabels()]
    shown = [int(t.get_text().split()[0][1:]) for a in panels for t in a.get_yticklabels()]
    assert shown[-1] == 0 and len(shown) == 4 and 0 not in shown[:-1]   # 3 specific, then the background one
    grey = [b.get_facecolor() == to_rgba(F.BASE_COLOR) for a in panels for b in _bars(a)]
    assert grey == [False, False, False, True]
    # each panel on its own axis: the small specific bars are not flattened by the generic one's scale
    assert panels[0].get_xlim()[1] < panels[1].get_xlim()[1]
    # a share under 1% keeps its digits (it read "0%" before): 1 of 5 + 31 others' 1.0 ... per latent
    share = it[(it["item_id"] == 3) & (it["group"] == "specific")]["share"].iloc[0]
    assert panels[0].texts[0].get_text().startswith(F.share_text(share)) and F.share_text(0.0028) == "0.3%"
    assert F.share_text(0.25) == "25%" and F.share_text(0.00004) == "0.004%"
    plt.close(fig)


def test_card_header_keeps_whole_sentences():
    text = ("Fires on histories with more Film-Noir titles (odds ratio 3.0) than the average history. Also enriched, "
            "not named: War (odds ratio 1.7), Romance (odds ratio 1.5), Crime (odds ratio 1.4). Typical titles: "
            "Chinatown (1974) (17.1x base rate); The English Patient (1996) (18.1x base rate).")
    assert F.whole_sentences(text, 200) == ("Fires on histories with more Film-Noir titles (odds ratio 3.0) than the "
                                            "average history. Also enriched, not named: War (odds ratio 1.7), Romance "
                                            "(odds ratio 1.5), Crime (odds ratio 1.4).")
    # even the first sentence does not fit: cut at a word (no clause boundary before the limit), marked
    assert F.whole_sentences(text, 60) == "Fires on histories with more Film-Noir titles (odds ratio \u2026"
    assert F.whole_sentences("Typical titles: A (1999); B (2000); C (2001); D (2002)", 30) == \
        "Typical titles: A (1999) \u2026"                      # at the last clause boundary that fits


def test_heatmap_of_many_categories_keeps_the_enriched_and_says_category():
    """A catalogue of category ids (no titles, 30 categories): at most max_cols columns, the significantly
    enriched one among them, the axis named 'category' with how many of how many."""
    rng = np.random.default_rng(0)
    n_items, n = 61, 400
    items = pd.DataFrame({"item_id": np.arange(1, n_items), "i_category": [str(i % 30) for i in range(1, n_items)],
                          "popularity": 1})
    hist = rng.integers(1, n_items, (n, 5))
    hot = np.isin(hist % 30, [7]).any(1)                    # latent 0 fires where category 7 is in the history
    hist[hot] = np.where(hist[hot] % 30 == 7, hist[hot], 7)  # ... and such histories are all category 7
    idx = np.stack([np.zeros(n, int), rng.integers(1, 3, n)], 1)
    val = np.stack([np.where(hot, 3.0, 0.0), np.ones(n)], 1)
    d = dic.build_dictionaries(idx, val, hist, items, m=3, top_n=50)
    fig = F.enrichment_heatmap(d, [0, 1, 2], max_cols=8)
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert len(ticks) == 8 and "7" in ticks
    assert ax.get_xlabel().startswith("category (8 of 30") and ax.get_title(loc="left").startswith("Category")
    plt.close(fig)


def test_dose_response_without_the_label_panel():
    table = pd.DataFrame({"model": "SAE", "beta": [0.5, 1.0], "units": 3, "label_gain": [0.0, 0.01],
                          "label_gain_q25": 0.0, "label_gain_q75": 0.02, "concept_after": [0.1, 0.2],
                          "concept_q25": 0.05, "concept_q75": 0.3})
    full = FI.dose_response(table)
    assert len(full.axes) == 2
    one = FI.dose_response(table, label_panel=False)
    assert len(one.axes) == 1 and one.axes[0].get_ylabel() == "concept-item share of the top 10"
    assert "category ids" in one.axes[0].get_title(loc="left")
    plt.close(full)
    plt.close(one)


def test_steering_card_shows_whole_titles():
    long = "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963)"
    card = pd.DataFrame({"item_before": [1, 2], "title_before": ["Heat (1995)", "Jaws (1975)"],
                         "genres_before": ["Action", "Horror"], "item_after": [3, 1], "title_after": [long, "Heat (1995)"],
                         "genres_after": ["Sci-Fi|War", "Action"]})
    fig = FI.steering_card(card, "User 1 (test instance 0), latent 5 at β = 1")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert " ".join(next(t for t in texts if t.startswith("1. Dr.")).split()) == f"1. {long}"   # wrapped, never cut
    assert "\u2026" not in "".join(texts)
    plt.close(fig)
