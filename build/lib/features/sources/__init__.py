"""Event-log sources: each returns a validated :class:`features.rawlog.RawLog`."""
