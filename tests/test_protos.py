import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_committed_stubs_match_protos():
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.fail("grpcio-tools is needed to check the stubs (pip install -e '.[dev]')")
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import gen_protos
    finally:
        sys.path.pop(0)
    assert gen_protos.stale_files() == []
