"""Attention analysis: recording probabilities, sink and position-bias diagnostics, plots and report."""
