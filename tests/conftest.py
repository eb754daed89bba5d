from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODE_RECOGNIZER = ROOT.parent / "shared" / "data" / "code-recognizer" / "testdata.200"


@pytest.fixture
def code_recognizer_path() -> Path:
    if not CODE_RECOGNIZER.is_file():
        pytest.fail(
            f"shared data set missing: {CODE_RECOGNIZER} (CI clones ../shared beside the repo)"
        )
    return CODE_RECOGNIZER
