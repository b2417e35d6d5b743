"""User-defined processes: stored per user, callable by id from other process graphs."""
