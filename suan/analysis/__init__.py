"""Attention analysis: recording probabilities, sink and position-bias diagnostics (plots and the report live in
``pipelines.analysis_report``: no plotting in the model package)."""
