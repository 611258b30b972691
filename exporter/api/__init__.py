"""The usage API on the admin listener: the history's requests, usage and deployments as
JSON, CSV or Excel, and reports on demand."""
