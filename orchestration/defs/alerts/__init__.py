from orchestration.defs.alerts.definitions import defs

__all__ = ["defs"]
