"""CTR models (plain nn.Modules) and the builder that sizes them from the grade table."""
