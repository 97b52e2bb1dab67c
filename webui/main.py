"""anabranch-webui: serve the web UI, or set its admin password.

    anabranch-webui [--config FILE] [--listen HOST:PORT]
    anabranch-webui set-password [--config FILE] [--stdin]

Runs unprivileged; it needs access to the daemon's ipc:// sockets (the
`anabranch` group), its password file and its secret key file.  Exit status 2
means a bad configuration or bad input; the message names the key.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from dataclasses import replace

from anabranch.daemon import config

from .credentials import (CredentialError, check_new_password, hash_password, load_secret_key,
                          read_password_hash, write_password_hash)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

log = logging.getLogger("anabranch.webui")


def _fail(message: str, status: int = EXIT_BAD_INPUT) -> int:
    print(f"anabranch-webui: {message}", file=sys.stderr)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anabranch-webui",
        description="Anabranch web UI: live dashboard of the gateway, served by gunicorn.")
    parser.add_argument("--config", metavar="FILE", default=str(config.DEFAULT_PATH),
                        help=f"configuration file (default: {config.DEFAULT_PATH})")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help="address to serve on, overriding webui.listen")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    setpw = commands.add_parser(
        "set-password", help="set the admin password (stored as a scrypt hash in webui.password_file)")
    # SUPPRESS: `--config` given before the command must not be reset by this one.
    setpw.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="configuration file")
    setpw.add_argument("--stdin", action="store_true",
                       help="read the password from the first line of standard input, no prompt")
    return parser


def _read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CredentialError("standard input is not a terminal; pass --stdin to read the password from it")
    first = getpass.getpass("New admin password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise CredentialError("the two passwords differ; nothing was changed")
    return first


def set_password(settings: config.Config, from_stdin: bool) -> int:
    path = settings.webui.password_file
    try:
        password = _read_new_password(from_stdin)
        check_new_password(password)
    except CredentialError as exc:
        return _fail(str(exc))
    except (EOFError, KeyboardInterrupt):
        return _fail("no password given; nothing was changed")
    try:
        write_password_hash(path, hash_password(password))
    except CredentialError as exc:
        return _fail(f"webui.password_file: {exc}", EXIT_FAILED)
    print(f"admin password set in {path}; every browser signed in before must sign in again")
    return 0


def serve(settings: config.Config) -> int:
    from .app import create_app
    from .server import WebServer

    try:
        load_secret_key(settings.webui.secret_key_file)
    except CredentialError as exc:
        return _fail(f"webui.secret_key_file: {exc}")
    try:
        if read_password_hash(settings.webui.password_file) is None:
            log.warning("no admin password is set (%s is missing); nobody can log in until you run "
                        "`anabranch-webui set-password --config %s`",
                        settings.webui.password_file, settings.source)
    except CredentialError as exc:
        log.error("webui.password_file: %s", exc)

    log.info("serving on http://%s (daemon events at %s)", settings.webui.listen, settings.api.events)
    WebServer(lambda: create_app({"ANABRANCH_CONFIG": settings}),
              settings.webui.listen, settings.webui.threads).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    try:
        settings = config.load(args.config)
        if args.listen is not None:
            # Checked by the same rule as the file's webui.listen.
            config.parse({"webui": {"listen": args.listen}}, source="--listen")
            settings = replace(settings, webui=replace(settings.webui, listen=args.listen))
    except config.ConfigError as exc:
        return _fail(f"bad configuration:\n{exc}")

    if args.command == "set-password":
        return set_password(settings, args.stdin)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
