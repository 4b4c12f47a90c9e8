"""One exception family for kho: every message names what failed and says what to do next."""

from __future__ import annotations


class KhoError(Exception):
    """Base of every error kho raises on purpose; the CLI prints these without a traceback."""


class ConfigError(KhoError):
    """The environment or a setting is wrong (missing secret, bad port, unknown registry)."""


class WarehouseError(KhoError):
    """The embedded or remote PostgreSQL warehouse is unreachable, unhealthy or misconfigured."""


class ExtractError(KhoError):
    """A registry API or export file could not be read."""


class ContractError(KhoError):
    """Data breaks its source contract in a way that rejects a whole batch (not a single row)."""


class BatchRefused(ContractError):
    """More of a batch's records were rejected than its registry's limit allows: nothing of it was loaded."""


class LedgerMismatch(KhoError):
    """A batch's counts do not add up: read != new + changed + unchanged + rejected."""


class QualityError(KhoError):
    """A blocking Great Expectations check failed."""
