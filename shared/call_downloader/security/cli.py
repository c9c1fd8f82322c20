"""Shell commands for users and API keys.

    call-downloader user create --username U --role R [--password-stdin | --no-password]
    call-downloader user list
    call-downloader user reset-password --username U [--password-stdin]
    call-downloader create-admin [--username U] [--password-stdin | --from-env]
    call-downloader api-key create --username U [--name N]     (prints the key once)
    call-downloader api-key list [--username U]
    call-downloader api-key revoke --id ID

Passwords never go on the command line (they would end up in shell history and `ps`): they are
prompted for on a terminal, or read as one line from standard input with --password-stdin.
Also runnable on its own: `python -m call_downloader.security.cli user create ...`.
Each handler is set as `func` (and `fn`, the main CLI's name) on its parser and returns the
process exit code.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from typing import Any

from call_downloader.db.models import Role
from call_downloader.http.errors import ApiError
from call_downloader.security.passwords import PasswordPolicyError, validate_password

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    pass


def _read_password(args: argparse.Namespace) -> str:
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
        if not password:
            raise CliError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise CliError("no terminal to prompt on: pass the password with --password-stdin")
    first = getpass.getpass("Password: ")
    try:
        validate_password(first)  # say so now rather than after the second prompt
    except PasswordPolicyError as exc:
        raise CliError(str(exc)) from exc
    if getpass.getpass("Repeat password: ") != first:
        raise CliError("the passwords do not match")
    return first


def _run(action: Any) -> int:
    """Run `action()`; turn expected failures into a message and an exit code."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        action()
        return EXIT_OK
    except (CliError, PasswordPolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
    except ValueError as exc:  # e.g. a rejected ADMIN_PASSWORD
        print(f"error: {exc}", file=sys.stderr)
    except (OperationalError, ProgrammingError) as exc:
        print(
            "error: the database is unreachable or not migrated "
            f"({type(exc.orig).__name__ if exc.orig else type(exc).__name__}); "
            "check DATABASE_URL and run the migrations",
            file=sys.stderr,
        )
    return EXIT_ERROR


def _user_create(args: argparse.Namespace) -> int:
    def action() -> None:
        from call_downloader.db.engine import unit_of_work
        from call_downloader.security.users import create_user

        if args.no_password and args.role != Role.SOURCE:
            raise CliError("--no-password is only for source accounts (they use API keys)")
        password = None if args.no_password else _read_password(args)
        with unit_of_work() as session:
            user = create_user(session, args.username, args.role, password,
                               active=not args.inactive, actor="cli")
            print(f"created user {user.username} ({user.role}) id={user.id}")

    return _run(action)


def _create_admin(args: argparse.Namespace) -> int:
    def action() -> None:
        from call_downloader.config import get_settings
        from call_downloader.db.engine import unit_of_work
        from call_downloader.security.identity import ensure_admin_user
        from call_downloader.security.users import create_user

        if args.from_env:
            ensure_admin_user()
            print("bootstrap admin ensured (created from ADMIN_USERNAME/ADMIN_PASSWORD "
                  "if there was no user)")
            return
        username = args.username or get_settings().admin_username
        if not username:
            raise CliError("give --username (or set ADMIN_USERNAME)")
        password = _read_password(args)
        with unit_of_work() as session:
            user = create_user(session, username, Role.ADMIN, password, actor="cli")
            print(f"created admin {user.username} id={user.id}")

    return _run(action)


def _user_list(args: argparse.Namespace) -> int:
    def action() -> None:
        from call_downloader.db.engine import unit_of_work
        from call_downloader.security.users import list_users, user_to_dict

        with unit_of_work() as session:
            rows, _ = list_users(session, limit=10_000)
            for user in rows:
                print(json.dumps(user_to_dict(user)))

    return _run(action)


def _user_reset_password(args: argparse.Namespace) -> int:
    def action() -> None:
        from call_downloader.db.engine import unit_of_work
        from call_downloader.security.users import get_by_username, reset_password

        password = _read_password(args)
        with unit_of_work() as session:
            user = get_by_username(session, args.username)
            reset_password(session, user.id, password, actor="cli")
            print(f"password of {user.username} reset; its sessions were ended")

    return _run(action)


def _key_create(args: argparse.Namespace) -> int:
    def action() -> None:
        from call_downloader.db.engine import unit_of_work
        from call_downloader.security import audit
        from call_downloader.security.api_keys import create_api_key
        from call_downloader.security.users import get_by_username

        with unit_of_work() as session:
            user = get_by_username(session, args.username)
            if not user.active:
                raise CliError("the user is inactive")
            created = create_api_key(session, user, args.name or "")
            audit.record("cli", audit.API_KEY_CREATE, target=f"user:{user.username}",
                         detail={"key_id": str(created.id), "prefix": created.prefix,
                                 "name": created.name}, session=session)
        print(f"API key {created.prefix}... (id {created.id}) for {user.username}; "
              "it is shown once, store it now:", file=sys.stderr)
        print(created.key)

    return _run(action)


def _key_list(args: argparse.Namespace) -> int:
    def action() -> None:
        from call_downloader.db.engine import unit_of_work
        from call_downloader.security.api_keys import key_to_dict, list_api_keys
        from call_downloader.security.users import get_by_username

        with unit_of_work() as session:
            user_id = get_by_username(session, args.username).id if args.username else None
            for row in list_api_keys(session, user_id=user_id):
                print(json.dumps(key_to_dict(row)))

    return _run(action)


def _key_revoke(args: argparse.Namespace) -> int:
    def action() -> None:
        import uuid

        from call_downloader.db.engine import unit_of_work
        from call_downloader.security import audit
        from call_downloader.security.api_keys import revoke_api_key

        try:
            key_id = uuid.UUID(args.id)
        except ValueError as exc:
            raise CliError("--id must be the key's id (a UUID)") from exc
        with unit_of_work() as session:
            row = revoke_api_key(session, key_id)
            if row is None:
                raise CliError("no such API key")
            audit.record("cli", audit.API_KEY_REVOKE, target=f"user:{row.user.username}",
                         detail={"key_id": str(row.id), "prefix": row.prefix}, session=session)
        print(f"API key {row.prefix}... revoked")

    return _run(action)


def _password_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password as one line from standard input "
                             "(default: prompt on the terminal)")


def register(subparsers: Any) -> None:
    """Add `user`, `create-admin` and `api-key` to an argparse subparsers object."""
    user = subparsers.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", metavar="COMMAND")
    user_sub.required = True

    create = user_sub.add_parser("create", help="create a user")
    create.add_argument("--username", required=True)
    create.add_argument("--role", required=True, choices=Role.ALL)
    group = create.add_mutually_exclusive_group()
    group.add_argument("--password-stdin", action="store_true",
                       help="read the password as one line from standard input")
    group.add_argument("--no-password", action="store_true",
                       help="no password (source accounts that only use API keys)")
    create.add_argument("--inactive", action="store_true", help="create the user disabled")
    create.set_defaults(func=_user_create, fn=_user_create)

    listing = user_sub.add_parser("list", help="list users (JSON lines)")
    listing.set_defaults(func=_user_list, fn=_user_list)

    reset = user_sub.add_parser("reset-password", help="set a new password, ending sessions")
    reset.add_argument("--username", required=True)
    _password_options(reset)
    reset.set_defaults(func=_user_reset_password, fn=_user_reset_password)

    admin = subparsers.add_parser("create-admin", help="create an admin user")
    admin.add_argument("--username", help="default: ADMIN_USERNAME")
    admin_group = admin.add_mutually_exclusive_group()
    admin_group.add_argument("--password-stdin", action="store_true",
                             help="read the password as one line from standard input")
    admin_group.add_argument("--from-env", action="store_true",
                             help="create ADMIN_USERNAME/ADMIN_PASSWORD if no user exists yet")
    admin.set_defaults(func=_create_admin, fn=_create_admin)

    key = subparsers.add_parser("api-key", help="manage API keys of source accounts")
    key_sub = key.add_subparsers(dest="key_command", metavar="COMMAND")
    key_sub.required = True
    key_create = key_sub.add_parser("create", help="create a key (printed once)")
    key_create.add_argument("--username", required=True)
    key_create.add_argument("--name", default="")
    key_create.set_defaults(func=_key_create, fn=_key_create)
    key_list = key_sub.add_parser("list", help="list keys (JSON lines)")
    key_list.add_argument("--username")
    key_list.set_defaults(func=_key_list, fn=_key_list)
    key_revoke = key_sub.add_parser("revoke", help="revoke a key")
    key_revoke.add_argument("--id", required=True)
    key_revoke.set_defaults(func=_key_revoke, fn=_key_revoke)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="call-downloader", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
