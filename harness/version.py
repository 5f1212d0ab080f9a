"""cifar-bench's version, as its installed distribution says (``0+unknown`` from a source tree not installed)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cifar-bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
