"""MLflow runs -> tables, fitted U-curves, size and alignment studies, the report."""
