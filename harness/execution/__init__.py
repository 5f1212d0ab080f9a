"""Plans of runs and the backends that run them; :func:`plan.execute` is the one loop every way of running shares."""
