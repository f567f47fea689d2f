"""The ``flowreg`` command line: a thin shell over the sync engine."""
