"""llm-usage-exporter: an LLM API gateway sidecar that exports usage as Prometheus metrics."""

__version__ = "0.1.0"
