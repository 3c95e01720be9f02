"""The training recipe as plain torch: optimiser groups, learning-rate schedules, embedding regularisation.

Systems (``pipelines.systems``, ``distill.system``) own the loop; the numbers that decide how a model
learns live here once, so plain training and distillation cannot drift apart. ``suan.recipe.config``
imports no torch (the CLI validates recipes with it); ``optim`` and ``regularization`` do.
"""
