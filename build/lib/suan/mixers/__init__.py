"""Token mixers: one file per mixer, all registered by name in ``registry.py``."""
