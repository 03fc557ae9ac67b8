"""Every notebook in ``notebooks/`` runs top to bottom (a temp copy, a fresh kernel,
CPU), and the committed copies carry their outputs (plots) so they render on GitHub."""

from __future__ import annotations

import importlib.util
import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_notebooks", ROOT / "tools" / "make_notebooks.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_generated_notebook_is_committed():
    names = {p.stem for p in NOTEBOOKS}
    assert names == set(_generator().NOTEBOOKS)
    assert len(names) == 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_matches_generator_and_has_plots(path):
    nb = nbformat.read(path, as_version=4)
    cells = _generator().NOTEBOOKS[path.stem]
    assert [c.source for c in nb.cells] == [src for _, src in cells]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "re-run tools/make_notebooks.py"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "no plot in the committed notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    work = tmp_path / path.name
    shutil.copy(path, work)
    nb = nbformat.read(work, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    NotebookClient(
        nb, timeout=300, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()  # fmt: skip  # raises CellExecutionError with the cell and traceback
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    stderr = [o.text for o in outputs if o.get("name") == "stderr"]
    assert not stderr, stderr  # no warnings leak into the notebook
