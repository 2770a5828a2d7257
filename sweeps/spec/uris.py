"""Which tracking URIs a sweep accepts (text only; sweeps/tracking_uri.py opens the store)."""

from __future__ import annotations

from urllib.parse import urlsplit

# Tracking URIs a sweep accepts: MLflow's tracking stores less the file store
# (MLflow 3 refuses it for new features). Whether the store opens is checked
# before a run writes anything (sweeps/tracking_uri.py).
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https", "databricks")
ACCEPTED = (
    "sqlite:///<file>, postgresql://, mysql://, mssql:// (each optionally +driver), "
    "http(s)://<host>, databricks"
)


def tracking_scheme(uri: str) -> str:
    """`sqlite`, `postgresql`, `http` ... of a tracking URI (a driver suffix dropped; "" for a path)."""
    if "://" not in uri:
        return "databricks" if uri == "databricks" else ""
    return uri.split("://", 1)[0].split("+", 1)[0].lower()


def uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be a sweep's tracking URI (None: it can); the text names what is accepted."""
    scheme = tracking_scheme(uri)
    if uri.strip() != uri or not uri:
        return f"{uri!r} is empty or has surrounding spaces; accepted: {ACCEPTED}"
    if scheme not in SQL_SCHEMES + SERVER_SCHEMES:
        what = f"scheme {scheme!r}" if scheme else "a plain path (MLflow's file store)"
        if scheme == "file":
            what = "MLflow's file store (file://)"
        return f"{uri!r} is {what}, which sweeps do not use; accepted: {ACCEPTED}"
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or len(uri) == len("sqlite:///"):
            return (
                f"{uri!r} names no database file (in-memory SQLite is lost when the driver "
                "ends); give sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
    elif scheme in ("http", "https") and not urlsplit(uri).hostname:
        return f"{uri!r} has no host; e.g. http://127.0.0.1:5000"
    return None
