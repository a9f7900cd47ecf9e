from orchestration.defs.ingestion.definitions import defs

__all__ = ["defs"]
