"""telcolake: a streaming lakehouse for a telco's BSS/OSS data."""

__version__ = "0.1.0"
