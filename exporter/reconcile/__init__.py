"""The providers' own bills beside ours: their admin APIs' usage and cost reports fetched,
kept in the history and compared (docs/reconciliation.md)."""
