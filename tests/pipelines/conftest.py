import pytest
from pipeline_project import make_project


@pytest.fixture
def project(tmp_path):
    """A scratch git + DVC project with tiny params: 2 models x 2 folds (see pipeline_project)."""
    return make_project(tmp_path)
