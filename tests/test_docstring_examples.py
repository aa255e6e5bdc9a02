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


def test_the_package_has_examples_to_run():
    finder = doctest.DocTestFinder()
    runnable = sum(
        not example.options.get(doctest.SKIP, False)
        for name in MODULES for test in finder.find(importlib.import_module(name)) for example in test.examples
    )  # fmt: skip
    assert runnable >= 50  # 101 runnable examples (in 58 docstrings) when this test was written
