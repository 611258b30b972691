"""The models a team serves itself: their health, GPU time and its cost (probe.py)."""
