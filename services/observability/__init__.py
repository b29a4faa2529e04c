"""Observability as code: the Grafana dashboards and the `fraud report` plots."""
