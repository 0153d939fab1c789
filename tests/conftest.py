import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    # one tokenizer cache per test session, never the user's
    if "UNLEARNBENCH_CACHE" not in os.environ:
        os.environ["UNLEARNBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
