"""Whether the trackers' extras are installed, and the skip marks of the tests that need them."""

from __future__ import annotations

import importlib.util

import pytest

HAVE_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
needs_mlflow = pytest.mark.skipif(not HAVE_MLFLOW, reason="mlflow is not installed (pip install -e '.[mlflow]')")
needs_tensorboard = pytest.mark.skipif(
    not HAVE_TENSORBOARD, reason="tensorboard is not installed (pip install -e '.[tensorboard]')"
)
