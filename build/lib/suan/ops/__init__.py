"""Functional, stateless ops: one folder per op, ``naive.py`` reference first, one dispatch point."""
