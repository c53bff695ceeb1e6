"""The variants benchmark's decision pieces: which variants keep fidelity (the bar every target is judged
under), and the report that names them, on made-up results with known answers."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark imports its neighbour bench_steering
_spec = importlib.util.spec_from_file_location("bench_sae_variants", ROOT / "benchmarks" / "bench_sae_variants.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def result(ret_dev, ret_test, ci, steer, sae_in, ev=0.95):
    return {"retention_dev": ret_dev, "retention_test": ret_test, "retention_test_ci": ci, "ev_h_test": ev,
            "steerable_share_kl": steer, "sae_in@0.3": sae_in, "sae_out@0.3": 0.2, "sae_multi3@0.3": 0.25,
            "auroc_k1": 0.6, "auroc_k4": 0.65}


def test_fidelity_kept_needs_dev_retention_and_one_inside_the_test_interval():
    assert bench.fidelity_kept(result(0.995, 0.99, [0.97, 1.01], 0.1, 0.05))
    assert not bench.fidelity_kept(result(0.985, 0.99, [0.97, 1.01], 0.1, 0.05))  # dev below 0.99
    assert not bench.fidelity_kept(result(1.01, 0.96, [0.93, 0.99], 0.1, 0.05))  # test interval excludes 1
    assert bench.fidelity_kept(result(0.99, 1.0, [1.0, 1.02], 0.1, 0.05))  # the bounds count


def test_report_names_the_kept_variants_and_the_best_of_them(tmp_path):
    base = {"diffmean@0.3": 0.2, "raw@0.3": 0.07, "random@0.3": 0.08, "auroc_k1": 0.61, "auroc_k4": 0.64}
    results = {"reference": {**result(0.993, 0.998, [0.98, 1.01], 0.12, 0.04), "baselines": base},
               "steady": result(0.991, 0.995, [0.97, 1.02], 0.32, 0.07),
               "sharp": result(0.96, 0.96, [0.93, 0.99], 0.59, 0.15, ev=0.9)}
    bench.write_report(tmp_path, types.SimpleNamespace(dataset="toy", samples=1000), results, None)
    text = (tmp_path / "README.md").read_text()
    assert "Fidelity kept (NDCG@10 retention >= 0.99 on dev and 1.0 inside the test interval): reference, steady." in text
    assert "steerable share steady (0.320)" in text and "input side steady (0.070)" in text
    assert "Failing fidelity: sharp (dev 0.960, test 0.960)" in text
    assert "sharp: out 1.00x, top-3 1.25x, in 0.75x" in text  # gains as multiples of DiffMean's 0.2
    assert (tmp_path / "variants.png").stat().st_size > 10_000
