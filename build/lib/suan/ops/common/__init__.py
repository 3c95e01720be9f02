"""Helpers shared by the attention ops: masks, positions, time buckets, backend choice."""
