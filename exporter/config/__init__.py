"""Configuration: the key table (frozen dataclasses, a doc line per key) and its YAML loader."""
