"""Runnable comparisons: `python -m experiments.scripts.<name> --help`."""
