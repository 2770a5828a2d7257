"""Sweep specs (YAML) and the orchestrator: spec -> trials -> Ray Tune -> MLflow; the CLI."""
