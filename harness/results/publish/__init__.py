"""``cifar-bench publish``: a static website of run records over commits (history, charts, pages, site)."""
