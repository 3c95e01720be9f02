"""Errors of the commands themselves (bad data and bad options have theirs in ``features`` and ``suan``)."""

from __future__ import annotations


class IncompleteWork(RuntimeError):
    """Some units of a many-run command failed (a sweep's points): the others finished and are kept, each
    failure is recorded with its error, and rerunning the command retries the failed units only."""
