"""The one owner of the history database (SQLite, or PostgreSQL for a fleet): connections
and dialects, the tables and their migrations, the single writer, every query, the
ledgers and leases the processes of a fleet share, and the scrape-time collector."""
