"""The ``cifar-bench`` command line: start-up and parsing (``cli``), one module per command, each its
arguments plus one library call, registered as built-in plugins' commands are (``builtin``)."""
