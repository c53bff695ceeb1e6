"""Labeling throughput against the test server with 50 ms per request (a stand-in for a fast LLM).

    .venv/bin/python benchmarks/bench_labeling.py [--cards 2048] [--serial-cards 64]

Requirement: 2,048 labels in under 30 s at concurrency 16. The serial run uses fewer cards; its
requests/s gives the speed-up ratio. Every run starts from an empty cache; one tiny run first
warms up imports so that they are not billed to the serial run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from llm_server import GENRES, FakeLLM  # noqa: E402

from recsae_utils.labeling import LLMConfig, label_latents  # noqa: E402


def synthetic_card(latent: int) -> dict:
    g = GENRES[latent % len(GENRES)]
    items = [{"item_id": latent * 20 + j, "title": f"Movie {latent}.{j}", "year": 1970 + (latent + j) % 30,
              "genres": [g, GENRES[(latent + j) % len(GENRES)]], "count": 20 - j, "strength": 10.0 - j * 0.4,
              "lift": 1.0 + (j % 5) / 2} for j in range(20)]
    return {"latent": latent, "n_fire": 100 + latent % 50, "freq": 0.01, "top_items": items,
            "genre_enrichment": [{"genre": g, "odds_ratio": 3.0, "p_value": 1e-4}],
            "decade_enrichment": [{"decade": 1980, "odds_ratio": 1.5, "p_value": 0.01}],
            "popularity_pct": 55.0, "context": "", "examples": []}


def run(server: FakeLLM, n_cards: int, concurrency: int) -> dict:
    cards = [synthetic_card(i) for i in range(n_cards)]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        df = label_latents(cards, LLMConfig(model="test-model", concurrency=concurrency), out, progress=False)
        secs = time.perf_counter() - t0
    assert (df["status"] == "ok").all(), df["status"].value_counts()
    return {"cards": n_cards, "concurrency": concurrency, "seconds": secs, "req_per_s": n_cards / secs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cards", type=int, default=2048)
    ap.add_argument("--serial-cards", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.05)
    args = ap.parse_args()

    server = FakeLLM(delay=args.latency).start()
    os.environ["OPENAI_API_KEY"] = server.api_key
    os.environ["OPENAI_BASE_URL"] = server.base_url
    try:
        run(server, 4, 1)   # warm-up: the openai package loads its response models lazily on first use (~1 s)
        rows = [run(server, args.serial_cards, 1), run(server, args.cards, 16)]
    finally:
        server.stop()
    print(f"server latency {args.latency * 1000:.0f} ms per request")
    print(f"{'cards':>6} {'concurrency':>11} {'seconds':>8} {'requests/s':>10}")
    for r in rows:
        print(f"{r['cards']:>6} {r['concurrency']:>11} {r['seconds']:>8.2f} {r['req_per_s']:>10.1f}")
    print(f"speed-up x{rows[1]['req_per_s'] / rows[0]['req_per_s']:.1f}; "
          f"{rows[1]['cards']} labels in {rows[1]['seconds']:.1f} s "
          f"({'meets' if rows[1]['cards'] < 2048 or rows[1]['seconds'] < 30 else 'MISSES'} the 30 s target)")


if __name__ == "__main__":
    main()
