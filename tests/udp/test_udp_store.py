"""UdpStore in a real SQLite database, and stored processes run by the real evaluator."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from terracube import errors
from terracube.auth.users import UserStore
from terracube.db import open_database
from terracube.engine.evaluate import Evaluator, Services
from terracube.settings import Settings
from terracube.udp.store import UdpLookup, UdpStore, UserDefinedProcess, udp_lookup_for


@pytest.fixture
def db(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'udp.db'}")
    users = UserStore(database)
    users.add("alice", "a")
    users.add("bob", "b")
    yield database
    database.dispose()


@pytest.fixture
def store(db) -> UdpStore:
    return UdpStore(db)


def predefined(registry):
    return registry.__contains__


def param(name: str, **extra) -> dict:
    return {"name": name, "description": f"the {name}", "schema": {}, **extra}


# A community-style process: the positions of several values in an array (array_find, once
# per value, through array_apply); `reverse` has a default.
ARRAY_FIND_ALL = {
    "summary": "Positions of values in an array",
    "parameters": [param("data", schema={"type": "array"}),
                   param("values", schema={"type": "array"}),
                   param("reverse", schema={"type": "boolean"}, optional=True, default=False)],
    "returns": {"description": "Index per value, null if not found.",
                "schema": {"type": "array"}},
    "process_graph": {
        "apply": {"process_id": "array_apply", "arguments": {
            "data": {"from_parameter": "values"},
            "process": {"process_graph": {"find": {"process_id": "array_find", "arguments": {
                "data": {"from_parameter": "data"},  # the UDP's parameter, from the parent
                "value": {"from_parameter": "x"},
                "reverse": {"from_parameter": "reverse"}}, "result": True}}}},
            "result": True},
    },
}

# A parameter default that is used unless the caller gives a value.
SCALE = {
    "parameters": [param("x"), param("factor", optional=True, default=10)],
    "process_graph": {"m": {"process_id": "multiply", "arguments": {
        "x": {"from_parameter": "x"}, "y": {"from_parameter": "factor"}}, "result": True}},
}


def call(process_id: str, **arguments) -> dict:
    return {"c": {"process_id": process_id, "arguments": arguments, "result": True}}


def run(store: UdpStore, registry, user: str, graph: dict):
    services = Services(registry=registry, udp_lookup=store.lookup(user, predefined(registry)))
    return Evaluator(services).run(graph)


# --- storing -----------------------------------------------------------------------------------
def test_store_get_list_delete(store, registry):
    store.store("alice", "array_find_all", ARRAY_FIND_ALL, predefined(registry))
    store.store("alice", "scale", SCALE, predefined(registry))
    got = store.get("alice", "array_find_all")
    assert got == {**ARRAY_FIND_ALL, "id": "array_find_all"}
    listed = store.list("alice")
    assert [p["id"] for p in listed] == ["array_find_all", "scale"]
    assert "process_graph" not in listed[0]
    assert listed[0]["summary"] == ARRAY_FIND_ALL["summary"]
    assert listed[0]["parameters"] == ARRAY_FIND_ALL["parameters"]
    store.delete("alice", "scale")
    assert [p["id"] for p in store.list("alice")] == ["array_find_all"]
    with pytest.raises(errors.ProcessGraphNotFound):
        store.get("alice", "scale")
    with pytest.raises(errors.ProcessGraphNotFound):
        store.delete("alice", "scale")


def test_replace_keeps_created_and_changes_updated(store, db, registry):
    store.store("alice", "scale", SCALE, predefined(registry))
    with db.session() as s:
        first = s.get(UserDefinedProcess, ("alice", "scale"))
        created, updated = first.created, first.updated
    changed = {**SCALE, "summary": "now with a summary"}
    store.store("alice", "scale", changed, predefined(registry))
    assert store.get("alice", "scale")["summary"] == "now with a summary"
    with db.session() as s:
        row = s.get(UserDefinedProcess, ("alice", "scale"))
        assert row.created == created and row.updated >= updated


def test_users_do_not_see_each_others_processes(store, registry):
    store.store("alice", "scale", SCALE, predefined(registry))
    assert store.list("bob") == []
    with pytest.raises(errors.ProcessGraphNotFound):
        store.get("bob", "scale")
    with pytest.raises(errors.ProcessGraphNotFound):
        store.delete("bob", "scale")
    # bob can have his own 'scale', independent of alice's
    store.store("bob", "scale", {**SCALE, "summary": "bob's"}, predefined(registry))
    assert "summary" not in store.get("alice", "scale")
    with pytest.raises(errors.ProcessUnsupported):
        run(store, registry, "bob", call("array_find_all", data=[1], values=[1]))


def test_predefined_ids_are_refused(store, registry):
    with pytest.raises(errors.PredefinedProcessExists):
        store.store("alice", "ndvi", SCALE, predefined(registry))
    assert store.list("alice") == []


def test_recursion_is_refused_when_storing(store, registry):
    pred = predefined(registry)
    with pytest.raises(errors.ProcessGraphInvalid, match="'me' calls itself"):
        store.store("alice", "me", {"process_graph": call("me")}, pred)
    # a circle through two processes is found when it closes
    store.store("alice", "ping", {"process_graph": call("pong")}, pred)  # pong: not yet there
    with pytest.raises(errors.ProcessGraphInvalid, match="pong -> ping -> pong"):
        store.store("alice", "pong", {"process_graph": call("ping")}, pred)
    # ... also when it closes by replacing a process
    store.store("alice", "pong", {"process_graph": call("absolute", x=1)}, pred)
    with pytest.raises(errors.ProcessGraphInvalid, match="pong -> ping -> pong"):
        store.store("alice", "pong", {"process_graph": call("ping")}, pred)
    assert store.get("alice", "pong")["process_graph"] == call("absolute", x=1)


def test_a_user_removed_takes_the_processes_along(store, db, registry):
    store.store("bob", "scale", SCALE, predefined(registry))
    UserStore(db).remove("bob")
    with db.session() as s:
        assert s.get(UserDefinedProcess, ("bob", "scale")) is None


# --- calling -----------------------------------------------------------------------------------
def test_parameter_default_and_given_value(store, registry):
    store.store("alice", "scale", SCALE, predefined(registry))
    assert run(store, registry, "alice", call("scale", x=4)) == 40
    assert run(store, registry, "alice", call("scale", x=4, factor=0.5)) == 2


def test_missing_required_argument(store, registry):
    store.store("alice", "scale", SCALE, predefined(registry))
    with pytest.raises(errors.ProcessParameterRequired, match="x"):
        run(store, registry, "alice", call("scale", factor=2))


def test_array_find_all_with_texts(store, registry):
    store.store("alice", "array_find_all", ARRAY_FIND_ALL, predefined(registry))
    data = ["a", "b", "c", "b"]
    assert run(store, registry, "alice",
               call("array_find_all", data=data, values=["b", "c", "z"])) == [1, 2, None]
    assert run(store, registry, "alice", call("array_find_all", data=data, values=["b", "c", "z"],
                                               reverse=True)) == [3, 2, None]


def test_array_find_all_with_numbers(store, registry):
    store.store("alice", "array_find_all", ARRAY_FIND_ALL, predefined(registry))
    assert run(store, registry, "alice",
               call("array_find_all", data=[5, 3, 7, 3], values=[3, 7, 9])) == [1, 2, None]


def test_udp_calling_udp_in_a_callback(store, registry):
    pred = predefined(registry)
    store.store("alice", "scale", SCALE, pred)
    store.store("alice", "scale_all", {
        "parameters": [param("data")],
        "process_graph": {"a": {"process_id": "array_apply", "arguments": {
            "data": {"from_parameter": "data"},
            "process": {"process_graph": {"s": {"process_id": "scale", "arguments": {
                "x": {"from_parameter": "x"}}, "result": True}}}}, "result": True}}}, pred)
    assert run(store, registry, "alice", call("scale_all", data=[1, 2, 3])) == [10, 20, 30]


def test_namespace_user_and_backend(store, registry):
    store.store("alice", "scale", SCALE, predefined(registry))
    graph = {"c": {"process_id": "scale", "namespace": "user", "arguments": {"x": 1},
                   "result": True}}
    assert run(store, registry, "alice", graph) == 10
    graph["c"]["namespace"] = "backend"  # only predefined processes
    with pytest.raises(errors.ProcessUnsupported):
        run(store, registry, "alice", graph)


def test_recursion_stored_behind_our_back_is_refused_at_run_time(store, db, registry):
    # Rows written without the checks of UdpStore.store (an older version, a manual edit, two
    # concurrent requests): calling them fails cleanly instead of recursing.
    now = datetime.now(UTC)
    with db.session() as s:
        for pid, callee in (("a", "b"), ("b", "a"), ("selfish", "selfish")):
            s.add(UserDefinedProcess(user_id="alice", process_id=pid, created=now, updated=now,
                                     definition={"id": pid, "process_graph": call(callee)}))
    pred = predefined(registry)
    for pid, message in (("a", "a -> b -> a"), ("selfish", "'selfish' calls itself")):
        with pytest.raises(errors.ProcessGraphInvalid, match=message) as info:
            run(store, registry, "alice", call(pid))
        assert info.value.status == 400
        # static validation (POST /validation, and /result before running) refuses it too
        validator = Evaluator(Services(registry=registry, udp_lookup=store.lookup("alice", pred)))
        with pytest.raises(errors.ProcessGraphInvalid, match=message):
            validator.validate(call(pid))


def test_lookup_reads_once_and_ignores_other_namespaces():
    loads = []

    def load():
        loads.append(1)
        return {"p": {"process_graph": call("absolute", x=1)}}

    lookup = UdpLookup(load, lambda pid: pid == "absolute")
    assert lookup("p", "backend") is None  # not ours (URL namespaces: test_udp_sharing)
    assert loads == []
    assert lookup("p", None)["process_graph"] == call("absolute", x=1)
    assert lookup("p", "user") is not None
    assert lookup("q", None) is None
    assert loads == [1]


def test_preloaded_lookup_needs_no_database_later(store, db, registry):
    store.store("alice", "scale", SCALE, predefined(registry))
    lookup = store.lookup("alice", predefined(registry), preload=True)
    db.dispose()
    store.db = None  # any further read would fail
    services = Services(registry=registry, udp_lookup=lookup)
    assert Evaluator(services).run(call("scale", x=2)) == 20


def test_lookup_from_settings_opens_the_database_only_when_needed(tmp_path, registry):
    settings = Settings(data_dir=tmp_path)
    database = open_database(settings.database_url)
    UserStore(database).add("carol", "c")
    UdpStore(database).store("carol", "scale", SCALE, predefined(registry))
    lookup = udp_lookup_for(settings, "carol", predefined(registry))
    services = Services(registry=registry, udp_lookup=lookup)
    assert Evaluator(services).run(call("add", x=1, y=2)) == 3
    assert lookup._processes is None  # no UDP called: the database was not read
    assert Evaluator(services).run(call("scale", x=2)) == 20
    database.dispose()
