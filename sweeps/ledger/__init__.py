"""The driver's record path: the journal of result files, the ledger, and the tracking stores.

`records` (typed results, failures, events), `ledger` (`Ledger`, the one way
in), `store` (the `TrackingStore` protocol), `mlflow_store` and `offline` (its
two implementations), `mlflow_sql` (the one module that knows MLflow's private
tables), `tracking_uri`, `write_queue` and `sync` (`granularity sync`).
"""
