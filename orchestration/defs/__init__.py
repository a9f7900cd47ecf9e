"""One package per domain; each returns its own small ``Definitions``."""
