"""The ledger without Ray: typed records, the tracking-store protocol, retries on the run, replay.

What a user would notice: a trial retried after an error shows each failed
attempt's reason on its MLflow run; a store that lacks a method the driver
calls is caught here, not as an AttributeError mid-sweep.
"""

from __future__ import annotations

import inspect
import json

import pytest
from sweeps_fake import FakeDataset, train, write_fake_spec

from contracts import ATTEMPTS, FAILURE, RETRY
from sweeps.ledger.ledger import Ledger
from sweeps.ledger.mlflow_store import Tracker
from sweeps.ledger.offline import OfflineTracker
from sweeps.ledger.records import (
    EVENTS,
    Epochs,
    Failed,
    FailureRecord,
    Final,
    Retry,
    Start,
    TrialRecord,
    event_from_json,
    read_journal,
)
from sweeps.ledger.store import TrackingStore
from sweeps.packs import run_pack
from sweeps.plan import build_plan
from sweeps.spec import load_spec

STORES = (Tracker, OfflineTracker)


# ---- records -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "event",
    [
        Start("k", attempt=2),
        Epochs("k", epochs=[[0, {"pretrain/loss": 1.5}]]),
        Final("k", result={"target_error": 0.25}, attempts=2, wall_s=1.0),
        Final("k", result={"target_error": 0.25}, history=[[0, {"a": 1.0}]]),
        Failed("k", reason="RuntimeError: boom", attempts=3, invocation="i", traceback="tb"),
        Retry("k", attempt=1, reason="RuntimeError: CUDA out of memory"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_event_survives_its_json_form(event):
    payload = json.loads(json.dumps(event.to_json()))
    assert payload["event"] == event.kind
    assert event_from_json(payload) == event


def test_every_event_kind_is_known_and_an_unknown_one_is_named():
    assert set(EVENTS) == {"start", "epochs", "final", "failed", "retry"}
    with pytest.raises(ValueError, match=r"unknown event 'resume'; known: start, epochs"):
        event_from_json({"event": "resume", "trial_key": "k"})


def test_records_leave_unset_fields_out_and_ignore_unknown_ones():
    failure = FailureRecord("k", reason="boom")
    assert failure.to_json() == {"trial_key": "k", "reason": "boom", "attempts": 1}
    record = TrialRecord.from_json(
        {"trial_key": "k", "config": {}, "meta": {}, "result": {"e": 1.0}, "later_field": 1}
    )
    assert record.result == {"e": 1.0} and record.history == []


# ---- the store protocol ----------------------------------------------------------------------
def _protocol_methods() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(TrackingStore).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


def missing_methods(cls: type) -> list[str]:
    """Protocol methods `cls` does not define itself with the protocol's parameters."""
    out = []
    for name, signature in _protocol_methods().items():
        own = inspect.getattr_static(cls, name, None)
        if not inspect.isfunction(own):
            out.append(name)
        elif list(inspect.signature(own).parameters) != list(signature.parameters):
            out.append(f"{name} (parameters differ)")
    return out


@pytest.mark.parametrize("store", STORES, ids=lambda c: c.__name__)
def test_each_store_implements_every_protocol_method_explicitly(store):
    assert "record_trials" in _protocol_methods() and "join_parent" in _protocol_methods()
    assert missing_methods(store) == []
    assert not hasattr(store, "__getattr__"), "no stand-in by name: each method is written out"


def test_a_store_missing_a_method_is_caught():
    class Partial(OfflineTracker):
        record_trials = None  # type: ignore[assignment]

    assert missing_methods(Partial) == ["record_trials"]
    assert isinstance(OfflineTracker("http://down:5000", "refused"), TrackingStore)


def test_the_offline_store_names_the_server_for_every_write():
    store = OfflineTracker("http://down:5000", "ConnectionError: refused")
    assert store.trial_runs() == {} and not store.online
    for name in _protocol_methods():
        if name == "trial_runs":
            continue
        params = inspect.signature(getattr(store, name)).parameters.values()
        args = [None for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        kwargs = {p.name: None for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
        with pytest.raises(ConnectionError, match="tracking server http://down:5000 unreachable"):
            getattr(store, name)(*args, **kwargs)


# ---- retries reach the run ----------------------------------------------------------------------
@pytest.fixture
def sweep(tmp_path):
    """A fake sweep's spec, a Tracker on its SQLite store, and 3 trials with their items."""
    spec = load_spec(
        write_fake_spec(tmp_path, "ledger", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    )
    plan = build_plan(spec, dataset=FakeDataset())
    tracker = Tracker(spec)
    tracker.start_parent(spec, "{}")
    trials = [t for t in plan.trials if t.config["hierarchy"] in ("manual", "random")][:3]
    items = {t.trial_key: {"config": t.config, "meta": t.meta()} for t in trials}
    return spec, tracker, items


def _run_tags(tracker: Tracker, key: str) -> dict[str, str]:
    run_id = tracker.trial_runs()[key].run_id
    return dict(tracker.client.get_run(run_id).data.tags)


@pytest.mark.parametrize("booking", ["whole-trial", "report-by-report", "replay"])
def test_a_retried_trials_reason_is_recorded_on_its_run(sweep, tmp_path, booking):
    spec, tracker, items = sweep
    storage = spec.resolved_storage_path()
    flaky, failing, plain = list(items)
    items[flaky]["config"] = dict(
        items[flaky]["config"], dataset_options={"flaky": [items[flaky]["config"]["hierarchy"]]}
    )
    items[failing]["config"] = dict(
        items[failing]["config"],
        dataset_options={"fail": [items[failing]["config"]["hierarchy"]]},
    )
    sent: list[dict] = []
    counts = run_pack(
        list(items.values()),
        trainable=train,
        emit=sent.extend,
        storage=storage,
        retries=1,
        invocation="a",
    )
    assert counts == {"finished": 2, "failed": 1, "skipped": 0}
    events = [event_from_json(e) for e in sent]
    assert [e.trial_key for e in events if isinstance(e, Retry)] == [flaky, failing]
    ledger = Ledger(tracker, storage, spec.spec_hash())
    ledger.expect(items)
    if booking == "whole-trial":  # each trial's whole life in one report: the bulk path
        ledger.book(events)
    elif booking == "report-by-report":  # the run is opened, then written to
        for event in events:
            ledger.book([event])
    else:  # the events never arrived (an outage, a killed driver): `sync` reads the journal
        assert ledger.replay(*read_journal(storage)) == 3
    flaky_tags = _run_tags(tracker, flaky)
    assert flaky_tags[f"{RETRY}.1"] == "RuntimeError: flaky first attempt"
    assert flaky_tags[ATTEMPTS] == "2"
    failing_tags = _run_tags(tracker, failing)
    assert failing_tags[f"{RETRY}.1"].startswith("RuntimeError")
    assert f"{RETRY}.2" not in failing_tags  # the last attempt's reason is the failure's
    assert failing_tags[FAILURE].startswith("RuntimeError") and failing_tags[ATTEMPTS] == "2"
    assert not any(k.startswith(RETRY) for k in _run_tags(tracker, plain))
    runs = tracker.trial_runs()
    assert [runs[k].status for k in (flaky, failing, plain)] == ["FINISHED", "FAILED", "FINISHED"]
    if booking != "replay":
        assert set(ledger.results) == {flaky, plain} and set(ledger.failures) == {failing}


def test_a_replay_logs_the_journal_once(sweep):
    spec, tracker, items = sweep
    storage = spec.resolved_storage_path()
    run_pack(
        list(items.values()),
        trainable=train,
        emit=lambda events: None,
        storage=storage,
        retries=0,
        invocation="a",
    )
    records, failures = read_journal(storage)
    assert set(records) == set(items) and not failures
    assert Ledger(tracker, storage, spec.spec_hash()).replay(records, failures) == 3
    assert Ledger(tracker, storage, spec.spec_hash()).replay(records, failures) == 0
    runs = tracker.trial_runs()
    assert {runs[k].status for k in items} == {"FINISHED"}


def test_the_ledgers_views_are_read_only(sweep, tmp_path):
    _, tracker, items = sweep
    ledger = Ledger(tracker, tmp_path, "h", runs={})
    ledger.expect(items)
    ledger.adopt({next(iter(items)): {"target_error": 0.5}})
    assert ledger.reused == 1
    with pytest.raises(TypeError):
        ledger.results["x"] = {}  # type: ignore[index]
    with pytest.raises(AttributeError):
        ledger.pending.add("x")  # type: ignore[attr-defined]
