"""User-defined processes in the SQL database: the table, UdpStore and the evaluator's lookup."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from terracube import errors
from terracube.db import Base, Database
from terracube.udp.definition import (
    IsPredefined,
    check_definition,
    declared_parameters,
    find_cycle,
    is_valid_process_id,
    recursion_error,
)
from terracube.udp.remote import is_url_namespace, remote_process

# What GET /process_graphs lists of each process: the API recommends leaving out the large
# parts (process_graph, examples, exceptions, links); GET /process_graphs/{id} has them all.
LISTED_PROPERTIES = ("id", "summary", "description", "categories", "parameters", "returns",
                     "deprecated", "experimental")


class UserDefinedProcess(Base):
    """A stored process of one user; ids are unique per user only."""

    __tablename__ = "user_defined_processes"

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    process_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    definition: Mapped[dict] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# One lock per user for storing processes (see UdpStore.store), shared by all stores of the
# process.
_USER_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class UdpStore:
    """The user-defined processes of all users; every method is scoped to one user."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def store(self, user_id: str, process_id: str, body: Any,
              is_predefined: IsPredefined) -> dict:
        """Check and store (create or fully replace) a process; returns what was stored."""
        # Imported here: the argument checks load every process module (xarray, dask...), and
        # this module is imported wherever the database is opened (db.MODEL_MODULES), e.g. by
        # `terracube users add`, which stores no process.
        from terracube.engine.argument_types import type_problems

        process = check_definition(process_id, body)
        problems = type_problems(process["process_graph"], is_predefined,
                                 scope=declared_parameters(process))
        if problems:  # a wrong-type argument, a parameter that is not declared
            raise problems[0]
        if is_predefined(process_id):
            raise errors.PredefinedProcessExists(
                f"'{process_id}' is a predefined process (GET /processes); choose another id "
                "for your process.")
        # The cycle check and the write are one step per user: two PUTs racing (a uses b,
        # b uses a) would each pass the check against the other's old version and store a
        # cycle. (One API process writes user processes; workers only read them.)
        with self._user_lock(user_id):
            return self._check_and_write(user_id, process_id, process, is_predefined)

    @staticmethod
    def _user_lock(user_id: str) -> threading.Lock:
        with _LOCKS_GUARD:
            return _USER_LOCKS.setdefault(user_id, threading.Lock())

    def _check_and_write(self, user_id: str, process_id: str, process: dict,
                         is_predefined: IsPredefined) -> dict:
        others = self.all(user_id)
        others[process_id] = process
        cycle = find_cycle(process_id, others, is_predefined)
        if cycle:
            raise recursion_error(cycle)
        now = datetime.now(UTC)
        for _attempt in range(2):
            try:
                with self.db.session() as s:
                    row = s.get(UserDefinedProcess, (user_id, process_id))
                    if row is None:
                        s.add(UserDefinedProcess(user_id=user_id, process_id=process_id,
                                                 definition=process, created=now, updated=now))
                    else:
                        row.definition = process
                        row.updated = now
                return process
            except IntegrityError:  # created concurrently: replace it on the second attempt
                continue
        raise errors.StorageFailure(f"Could not store the process '{process_id}'; try again.")

    def get(self, user_id: str, process_id: str) -> dict:
        """The full stored process; ProcessGraphNotFound for ids the user has not stored."""
        row = None
        if is_valid_process_id(process_id):
            with self.db.session() as s:
                row = s.get(UserDefinedProcess, (user_id, process_id))
        if row is None:
            raise _not_found(process_id)
        return copy.deepcopy(row.definition)

    def public(self, user_id: str, process_id: str) -> dict:
        """A process its owner shared (`public: true`); ProcessGraphNotFound otherwise, the
        same for a private process as for one that does not exist."""
        try:
            process = self.get(user_id, process_id)
        except errors.ProcessGraphNotFound:
            process = {}
        if process.get("public") is not True:
            raise errors.ProcessGraphNotFound(
                f"There is no public process '{process_id}' of user '{user_id}'.")
        return process

    def list(self, user_id: str) -> list[dict]:
        """The user's processes sorted by id, with the properties GET /process_graphs lists."""
        return [{key: process[key] for key in LISTED_PROPERTIES if key in process}
                for process in self.all(user_id).values()]

    def all(self, user_id: str) -> dict[str, dict]:
        """Every stored process of the user by id, in full."""
        with self.db.session() as s:
            rows = s.scalars(select(UserDefinedProcess)
                             .where(UserDefinedProcess.user_id == user_id)
                             .order_by(UserDefinedProcess.process_id))
            return {row.process_id: copy.deepcopy(row.definition) for row in rows}

    def delete(self, user_id: str, process_id: str) -> None:
        deleted = 0
        if is_valid_process_id(process_id):
            with self.db.session() as s:
                deleted = s.execute(delete(UserDefinedProcess).where(
                    UserDefinedProcess.user_id == user_id,
                    UserDefinedProcess.process_id == process_id)).rowcount
        if not deleted:
            raise _not_found(process_id)

    def lookup(self, user_id: str, is_predefined: IsPredefined,
               preload: bool = False) -> UdpLookup:
        """The `Services.udp_lookup` for one user.

        It reads the processes on first use, or now with `preload` (for code that must not
        use the database later, e.g. a forked job process).
        """
        lookup = UdpLookup(lambda: self.all(user_id), is_predefined)
        if preload:
            lookup.load()
        return lookup


class UdpLookup:
    """Finds a user's stored process by id for the evaluator; refuses recursive processes.

    Called as `lookup(process_id, namespace)` (see `Services.udp_lookup`); returns the process
    ({process_graph, parameters, ...}) or None. The user's processes are read once, on the
    first call, so one evaluation sees one consistent set of them.
    """

    def __init__(self, load: Callable[[], dict[str, dict]], is_predefined: IsPredefined) -> None:
        self._load = load
        self._is_predefined = is_predefined
        self._processes: dict[str, dict] | None = None
        self._checked: set[str] = set()
        self._remote: dict[tuple[str, str], dict] = {}

    def load(self) -> dict[str, dict]:
        if self._processes is None:
            self._processes = self._load()
        return self._processes

    def __call__(self, process_id: str, namespace: str | None = None) -> dict | None:
        # namespace null: user-defined or predefined; "user": only user-defined ones (API 1.2,
        # process_namespace); an http(s) URL: the process it serves (remote-process-definition
        # extension), read once per evaluation. Other namespaces are not ours.
        if is_url_namespace(namespace):
            key = (str(namespace), process_id)
            if key not in self._remote:
                self._remote[key] = remote_process(str(namespace), process_id)
            return self._remote[key]
        if namespace not in (None, "user"):
            return None
        processes = self.load()
        process = processes.get(process_id)
        if process is None:
            return None
        if process_id not in self._checked:
            cycle = find_cycle(process_id, processes, self._is_predefined)
            if cycle:
                raise recursion_error(cycle)
            self._checked.add(process_id)
        return process


def udp_lookup_for(settings: Any, user_id: str, is_predefined: IsPredefined) -> UdpLookup:
    """A lookup for code that has the settings but not the app's database (build_services).

    The database is opened only when a graph really calls a process that is not predefined,
    and closed right after reading, so plain requests and jobs pay nothing for it.
    """

    def load() -> dict[str, dict]:
        db = Database(settings.database_url)
        try:
            return UdpStore(db).all(user_id)
        finally:
            db.dispose()

    return UdpLookup(load, is_predefined)


def _not_found(process_id: str) -> errors.OpenEOError:
    return errors.ProcessGraphNotFound(
        f"User-defined process '{process_id}' does not exist; GET /process_graphs lists yours.")
