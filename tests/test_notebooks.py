"""nbval executes every numbered notebook, in order, on the tiny synthetic MovieLens (profile `tiny`).

The notebooks read the data, run and report folders from the environment, so they run unchanged
here, under papermill and in JupyterLab."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_run_under_nbval(tmp_path, tiny_root):
    notebooks = sorted(str(p) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks, "no numbered notebooks found"
    env = {**os.environ, "RECSAE_DATA_DIR": str(tiny_root), "RECSAE_RUN_DIR": str(tmp_path / "runs"),
           "RECSAE_REPORT_DIR": str(tmp_path / "reports"), "RECSAE_PROFILE": "tiny", "OPENAI_API_KEY": "",
           "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-o", "addopts=",
                        "-q", "-rA", *notebooks], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # nbval runs each code cell as one test: every cell of every notebook must be reported as passed
    expected = {(Path(nb).name, i) for nb in notebooks for i in range(code_cells(Path(nb)))}
    passed = {(Path(nb).name, int(i)) for nb, i in re.findall(r"^PASSED (\S+\.ipynb)::Cell (\d+)", r.stdout, re.M)}
    assert passed == expected, f"cells not passed: {sorted(expected - passed)}; unexpected: {sorted(passed - expected)}"
    assert re.search(rf"^{len(expected)} passed\b", r.stdout, re.M), r.stdout[-2000:]   # nothing skipped or failed
    summary = tmp_path / "reports" / "ml-1m" / "summary.json"
    assert summary.exists(), "the notebooks did not write their summary"


def code_cells(nb: Path) -> int:
    return sum(c["cell_type"] == "code" for c in json.loads(nb.read_text(encoding="utf-8"))["cells"])
