"""``python -m cifar_bench``: the same as the ``cifar-bench`` command."""

from .cli import console

console()
