"""``python -m cifar_bench``: the same as the ``cifar-bench`` command."""

import sys

from .cli import main

sys.exit(main())
