"""The SQLite request history: its store and single writer, queries, exports, the usage API,
and the collector that reads spend and budgets from it at scrape time."""
