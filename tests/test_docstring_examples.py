"""Every docstring example in hf_lnl runs and shows what it prints. Examples that need objects a reader brings (a
trained `trainer`, a dataset, a file) are illustrations, marked `# doctest: +SKIP`."""

import doctest
import importlib
import pkgutil

import pytest

import hf_lnl

MODULES = sorted(info.name for info in pkgutil.walk_packages(hf_lnl.__path__, "hf_lnl.") if not info.ispkg)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes ("out", "hist.png") writes here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (printed above)"


def test_the_package_has_examples_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attempted = sum(doctest.testmod(importlib.import_module(name)).attempted for name in MODULES)
    assert attempted >= 50  # 58 runnable examples when this test was written
