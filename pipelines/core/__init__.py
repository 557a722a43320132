"""Core pieces every domain uses: config, errors, lake, duck, broker, contracts.

Only the light names are re-exported here; import ``pipelines.core.lake``, ``.duck``,
``.broker`` and ``.contracts`` by module (they load Arrow, DuckDB and the Kafka client).
"""

from pipelines.core.config import REPO_ROOT, Settings, load_settings
from pipelines.core.errors import (
    BillingError,
    BrokerError,
    CatalogError,
    ChurnError,
    ConfigError,
    LakeError,
    QualityGateFailed,
    QualitySuiteError,
    TelcolakeError,
)

__all__ = [
    "REPO_ROOT",
    "BillingError",
    "BrokerError",
    "CatalogError",
    "ChurnError",
    "ConfigError",
    "LakeError",
    "QualityGateFailed",
    "QualitySuiteError",
    "Settings",
    "TelcolakeError",
    "load_settings",
]
