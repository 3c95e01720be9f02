"""Small torch-free helpers shared by every package."""
