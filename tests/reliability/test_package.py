"""What a user installing mxjax gets (issue 19, item 16): the Apache-2.0 LICENSE the
metadata declares, an extra for the notebooks' nbconvert, and an sdist that carries
no test files it cannot run."""

from __future__ import annotations

import os
import re
import tarfile
import tomllib

import pytest

from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_is_the_apache_2_text_the_metadata_declares():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    sections = re.findall(r"^\s+(\d)\. (\w[\w ]*)\.", text, re.M)
    assert [n for n, _ in sections] == [str(i) for i in range(1, 10)]
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 11000


def test_an_extra_provides_what_the_notebooks_need():
    extras = PYPROJECT["project"]["optional-dependencies"]
    nb = " ".join(extras["notebooks"])
    for pkg in ("nbconvert", "nbclient", "ipykernel", "matplotlib", "flax"):
        assert pkg in nb, pkg


def test_the_sdist_rule_ships_no_tests():
    rules = (ROOT / "MANIFEST.in").read_text().splitlines()
    assert "prune tests" in rules and "include LICENSE" in rules


def test_the_sdist_holds_the_license_and_no_tests(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:  # pyproject's build requirement
        pytest.skip(f"setuptools {setuptools.__version__} cannot read this pyproject")
    from setuptools import build_meta

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        name = build_meta.build_sdist(str(tmp_path))
    finally:
        os.chdir(cwd)
    with tarfile.open(tmp_path / name) as tar:
        files = [m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name]
    assert "LICENSE" in files
    assert not [f for f in files if f.startswith("tests/")]
