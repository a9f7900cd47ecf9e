from orchestration.defs.logfiles.definitions import defs

__all__ = ["defs"]
