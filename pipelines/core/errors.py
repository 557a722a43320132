"""Project exceptions: each message names the bad value and what is allowed."""


class TelcolakeError(Exception):
    """Base class of every error telcolake raises on purpose."""


class ConfigError(TelcolakeError):
    """A configuration value is missing or not allowed."""


class BrokerError(TelcolakeError):
    """The Kafka broker could not be started, found or reached."""


class LakeError(TelcolakeError):
    """A lake table is missing or cannot be read or written."""


class ConcurrentWriterError(TelcolakeError):
    """Another process writes the same table (or holds its lease) and this one cannot proceed."""


def project_error(exc: BaseException) -> TelcolakeError | None:
    """The project error behind ``exc`` (a dataflow re-raises a step's error wrapped in its own)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, TelcolakeError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


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
