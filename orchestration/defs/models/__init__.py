from orchestration.defs.models.definitions import defs

__all__ = ["defs"]
