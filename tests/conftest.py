import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def extractor_cache(tmp_path_factory):
    """One cache of trained evaluation classifiers per test session, inherited by the
    CLI subprocesses, so the digits classifier trains once and never lands in ~/.cache."""
    path = str(tmp_path_factory.mktemp("jaxgen_cache"))
    previous = os.environ.get("JAXGEN_CACHE")
    os.environ["JAXGEN_CACHE"] = path
    yield path
    if previous is None:
        os.environ.pop("JAXGEN_CACHE", None)
    else:
        os.environ["JAXGEN_CACHE"] = previous
