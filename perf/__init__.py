"""Performance scripts: each prints a ratio measured in one run against a baseline."""
