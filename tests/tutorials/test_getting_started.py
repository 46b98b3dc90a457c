"""tutorials/getting_started.ipynb runs top to bottom (nbclient, a real Jupyter kernel) on the
real balloon set, with its settings cell made small and without downloads."""

import re

import nbformat
from nbclient import NotebookClient

from ..helpers import REPO_ROOT

NOTEBOOK = REPO_ROOT / "tutorials" / "getting_started.ipynb"
# The settings cell for the test: a few iterations at a small size, from scratch (no internet).
TEST_SETTINGS = 'MAX_ITER = 3\nIMAGE_SIZE = 160\nINIT_CHECKPOINT = ""\n'


def test_notebook_runs_top_to_bottom(datasets_root, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Committed without outputs, so that diffs show only what changed.
    assert all(
        not cell.get("outputs") and not cell.get("execution_count")
        for cell in notebook.cells
        if cell.cell_type == "code"
    )
    (settings,) = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert "MAX_ITER = " in settings.source and "INIT_CHECKPOINT = " in settings.source
    settings.source = TEST_SETTINGS
    # The kernel imports gcnet from this checkout and finds balloon under DETECTRON2_DATASETS.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets_root))
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails

    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "a new block is the identity (its last conv starts at zero): True" in text
    assert re.search(r"mask_rcnn_R_50_FPN_syncbn_gc_r16_1x\.py +46\.92M +46\.9M", text), text
    assert "loss: " in text and "instances with a score of at least 0.3 on" in text
    figures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(figures) == 2  # the loss curve; the predictions beside the attention maps
