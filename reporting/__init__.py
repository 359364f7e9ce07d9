"""Helpers shared by training/ and benchmarks/ (neither imports the other): the header,
markdown tables, results files and the doc/ pages rendered from them. Not installed."""
