"""`terracube users add|list|remove|passwd|admin|budget`: user accounts and their weekly
compute allowances."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING, Any

from terracube.cli.common import EXIT_FAILED, EXIT_OK, settings_from, usage

if TYPE_CHECKING:
    from terracube.auth.users import UserStore

# The handlers import what they use (the database, the OIDC and budget modules...): every
# `terracube` command builds this parser, and most need none of them (cli/main.py).


def add_commands(commands: Any, data_dir: argparse.ArgumentParser) -> None:
    """Register `users add|list|remove|passwd`."""
    users = commands.add_parser("users", help="manage user accounts")
    user_commands = users.add_subparsers(title="users commands", metavar="ACTION")
    add = user_commands.add_parser(
        "add", parents=[data_dir],
        help="add a user; the password is prompted for, or read from stdin if not a terminal")
    add.add_argument("name")
    add.set_defaults(handler=users_add)
    listing = user_commands.add_parser("list", parents=[data_dir], help="list the users")
    listing.set_defaults(handler=users_list)
    remove = user_commands.add_parser("remove", parents=[data_dir], help="remove a user")
    remove.add_argument("name")
    remove.set_defaults(handler=users_remove)
    passwd = user_commands.add_parser(
        "passwd", parents=[data_dir],
        help="change a user's password (prompted for, or read from stdin); logs the user out")
    passwd.add_argument("name")
    passwd.set_defaults(handler=users_passwd)
    admin = user_commands.add_parser(
        "admin", parents=[data_dir],
        help="give a user the admin role (e.g. the course hub's admin page); --revoke takes it")
    admin.add_argument("name")
    admin.add_argument("--revoke", action="store_true", help="take the admin role away")
    admin.set_defaults(handler=users_admin)
    budget = user_commands.add_parser(
        "budget", parents=[data_dir],
        help="show or set the CPU time users may use per rolling week (batch jobs and "
             "synchronous requests); over it, requests answer PaymentRequired and jobs stop")
    budget.add_argument("names", nargs="*", metavar="NAME",
                        help="the users (none: show every user's allowance and usage)")
    amount = budget.add_mutually_exclusive_group()
    amount.add_argument("--cpu-hours", type=float, metavar="H",
                        help="CPU-hours per week, e.g. 2.5")
    amount.add_argument("--cpu-seconds", type=float, metavar="S", help="CPU-seconds per week")
    amount.add_argument("--unlimited", action="store_true", help="remove the allowance")
    budget.set_defaults(handler=users_budget)
    users.set_defaults(handler=lambda _args: usage(users))


def _user_store(args: argparse.Namespace) -> UserStore:
    from terracube.auth.users import UserStore
    from terracube.db import open_database

    settings = settings_from(args)
    return UserStore(open_database(settings.database_url))


def _read_password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise ValueError("the passwords do not match")
        return password
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def users_add(args: argparse.Namespace) -> int:
    from terracube.auth.users import UserExists, check_user_id

    try:
        check_user_id(args.name)
        store = _user_store(args)
        store.add(args.name, _read_password())
    except (ValueError, UserExists) as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"user '{args.name}' added")
    return EXIT_OK


def users_list(args: argparse.Namespace) -> int:
    from terracube.auth.oidc import oidc_identities

    store = _user_store(args)
    identities = oidc_identities(store.db)
    for user in store.list():
        identity = identities.get(user.user_id)
        if identity is None:
            print(user.user_id)
        else:  # created by an OpenID Connect sign-in (docs/administration/oidc.md)
            who = ", ".join(x for x in (identity.name, identity.email) if x)
            print(f"{user.user_id}\tOpenID Connect '{identity.provider_id}'"
                  + (f": {who}" if who else ""))
    return EXIT_OK


def users_remove(args: argparse.Namespace) -> int:
    from terracube.auth.users import UserNotFound
    from terracube.workspace.retention import remove_workspace

    try:
        _user_store(args).remove(args.name)
    except UserNotFound as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    # The files go with the account: a new user of the same name must not find them.
    if remove_workspace(settings_from(args), args.name):
        print(f"workspace of '{args.name}' removed")
    print(f"user '{args.name}' removed")
    return EXIT_OK


def users_passwd(args: argparse.Namespace) -> int:
    from terracube.auth.users import UserNotFound

    try:
        store = _user_store(args)
        if not store.exists(args.name):
            raise UserNotFound(f"no user '{args.name}'")
        store.set_password(args.name, _read_password())
    except (ValueError, UserNotFound) as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"password of '{args.name}' changed")
    return EXIT_OK


def users_admin(args: argparse.Namespace) -> int:
    from terracube.auth.admins import set_admin
    from terracube.auth.users import UserNotFound

    try:
        set_admin(_user_store(args).db, args.name, not args.revoke)
    except UserNotFound as exc:
        print(f"terracube: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"'{args.name}' {'is no longer' if args.revoke else 'is now'} an admin")
    return EXIT_OK


def users_budget(args: argparse.Namespace) -> int:
    from terracube.processing.costs import ComputeBudgets

    store = _user_store(args)
    budgets = ComputeBudgets(store.db)
    seconds = (args.cpu_hours * 3600 if args.cpu_hours is not None else args.cpu_seconds)
    if seconds is not None and seconds < 0:
        print("terracube: the allowance must be >= 0", file=sys.stderr)
        return EXIT_FAILED
    changing = seconds is not None or args.unlimited
    names = args.names or ([] if changing else [u.user_id for u in store.list()])
    if changing and not names:
        print("terracube: name the users whose allowance to set", file=sys.stderr)
        return EXIT_FAILED
    for name in names:
        if not store.exists(name):
            print(f"terracube: no user '{name}'", file=sys.stderr)
            return EXIT_FAILED
    for name in names:
        if changing:
            budgets.set(name, None if args.unlimited else seconds)
        allowance = budgets.allowance(name)
        limit = ("unlimited" if allowance.cpu_seconds_per_week is None
                 else f"{allowance.cpu_seconds_per_week:g} CPU-s/week")
        print(f"{name}: {limit}, used {allowance.used_cpu_seconds:.1f} CPU-s in the last 7 days")
    return EXIT_OK
