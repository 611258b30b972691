"""Every metric's name, HELP, labels and buckets; /metrics and the admin listener."""
