"""Development tools: the simulated upstream, the demo, the benchmark and its load generators.

Production code never imports this package (a test checks what `serve` loads).
"""
