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
from recsae_utils.figures import concepts as F, training as T  # noqa: E402

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
    shown = [int(t.get_text().split()[0][1:]) for t in ax.get_yticklabels()]
    want = rows.sort_values(["group", "rank"], key=lambda c: c.map({"specific": 0, "background": 1}) if c.name == "group" else c)
    assert shown == want["latent"].tolist()
    grey = [b.get_facecolor() == to_rgba(F.BASE_COLOR) for b in _bars(ax)]
    assert grey == [g == "background" for g in want["group"]]
    if any(grey):
        assert "generic background" in ax.get_title(loc="left") and grey[-1]
    _saved(fig, tmp_path, "user_spec")
    idx = np.stack([np.r_[0, j] for j in range(1, M)] * 4)         # item 3's sequences: latent 0 and each other
    val = np.tile([[5.0, 1.0]], (len(idx), 1))
    hist = np.full((len(idx), 1), 3)
    it = xpl.item_concepts(idx, val, hist, 4, top=3, m=M, spec=spec)
    fig = F.movie_profile(it, 3, items=world["items"])
    ax = fig.axes[0]
    shown = [int(t.get_text().split()[0][1:]) for t in ax.get_yticklabels()]
    assert shown[-1] == 0 and len(shown) == 4 and 0 not in shown[:-1]   # 3 specific, then the background one
    grey = [b.get_facecolor() == to_rgba(F.BASE_COLOR) for b in _bars(ax)]
    assert grey == [False, False, False, True]
    plt.close(fig)
