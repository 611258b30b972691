"""The Grafana dashboards, generated in Python on Grafana's own builder (grafana-foundation-sdk).

`python -m grafana` writes dashboards/*.json; `python -m grafana --check` fails when they
differ from what the code generates, or when a dashboard breaks a rule of lint.py.
"""
