"""cifar-bench's built-in plugins: ordinary plugins that use only the public API."""
