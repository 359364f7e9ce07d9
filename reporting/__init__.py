"""Helpers shared by training/ and benchmarks/ (neither imports the other): the header,
markdown tables and README sections their scripts write. Not installed."""
