"""Benchmarks: each reports numbers and ratios against a measured floor."""
