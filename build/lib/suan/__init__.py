"""suan package."""
