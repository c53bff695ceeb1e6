"""Progress of a long stage in the terminal of `make all`: the package appends one line per step (an epoch,
a fit) to the file the pipeline names (config.progress_file), and the pipeline prints each new line with
the dataset and stage. Outside the pipeline nothing is written; the notebooks keep their own tqdm output."""
from __future__ import annotations

from . import config


def step(message: str) -> None:
    """Append one progress line for the pipeline's terminal (a no-op when no pipeline is listening)."""
    path = config.progress_file()
    if path is None:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(message.replace("\n", " ") + "\n")
    except OSError:
        pass  # progress is a courtesy: it never stops a stage


def note(message: str) -> None:
    """A remark about the input (a non-official archive, dropped duplicates): printed where the code runs (the
    notebook) and also sent to the pipeline's terminal, where it used to be missing."""
    print(message, flush=True)
    step(message)
