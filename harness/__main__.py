"""``python -m cifar_bench``: the same as the ``cifar-bench`` command."""

from .commands.cli import console

console()
