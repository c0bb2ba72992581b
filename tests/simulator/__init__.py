"""Tests of the DashScope simulator (airflow_provider_wan.testing)."""
