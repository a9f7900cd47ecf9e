from orchestration.defs.quality.definitions import defs

__all__ = ["defs"]
