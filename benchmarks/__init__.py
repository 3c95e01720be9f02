"""Benchmarks: timing and memory measurements that print numbers and never fail on them."""
