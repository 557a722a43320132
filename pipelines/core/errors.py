"""Project exceptions: each message names the bad value and what is allowed."""


class TelcolakeError(Exception):
    """Base class of every error telcolake raises on purpose."""


class ConfigError(TelcolakeError):
    """A configuration value is missing or not allowed."""


class BrokerError(TelcolakeError):
    """The Kafka broker could not be started, found or reached."""


class LakeError(TelcolakeError):
    """A lake table is missing or cannot be read or written."""


class QualityGateFailed(TelcolakeError):
    """A quality gate failed; publishing or billing was refused."""


class CatalogError(TelcolakeError):
    """The tariff catalog file is invalid or would rewrite a loaded version."""


class BillingError(TelcolakeError):
    """A bill run or rerate was refused (closed cycle, missing input, bad cycle)."""


class QualitySuiteError(TelcolakeError):
    """A quality suite module cannot be imported or a suite is malformed."""


class ChurnError(TelcolakeError):
    """Churn training or scoring was refused (no features, no model, a split without churners)."""


class FulfilmentError(TelcolakeError):
    """An order cannot be found or does not allow the request, or a fulfilment run went wrong."""
