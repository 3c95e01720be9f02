"""Reusable layers: norms, feed-forward, Dice, embeddings."""
