"""An example cifar-bench plugin; the hooks live in :mod:`cifar_bench_example.plugin`."""
