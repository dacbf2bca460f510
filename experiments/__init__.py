"""The runs behind the CLI (compare, stress, akd, bench, sequential), result records and
report rendering. The only place that combines editors, data and metrics.
"""
