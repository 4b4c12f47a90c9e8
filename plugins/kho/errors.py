"""One exception family for kho: every message names what failed and says what to do next."""

from __future__ import annotations


class KhoError(Exception):
    """Base of every error kho raises on purpose; the CLI prints these without a traceback."""


class ConfigError(KhoError):
    """The environment or a setting is wrong (missing secret, bad port, unknown registry)."""


class UsageError(ConfigError):
    """The command line asks for something that does not exist or cannot be read (an unknown entity, a time without
    its zone): `kho` exits 2 for these, as for argparse's own usage errors, and 1 for every other failure."""


class WarehouseError(KhoError):
    """The embedded or remote PostgreSQL warehouse is unreachable, unhealthy or misconfigured."""


class ExtractError(KhoError):
    """A registry API or export file could not be read."""


class RegistryUnreachable(ExtractError):
    """Nothing listens at a registry's address (connection refused): no retry of a CLI sync changes that."""


class ContractError(KhoError):
    """Data breaks its source contract in a way that rejects a whole batch (not a single row)."""


class BatchRefused(ContractError):
    """More of a batch's records were rejected than its registry's limit allows: nothing of it was loaded."""


class LedgerMismatch(KhoError):
    """A batch's counts do not add up: read != new + changed + unchanged + rejected."""


class QualityError(KhoError):
    """A blocking Great Expectations check failed."""
