import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    from toy_plugin import ToyPlugin

    return ToyPlugin().demo(tmp_path_factory.mktemp("toy") / "data")
