"""The ``ris`` command: run the site and administer it from a shell."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import getpass
import re
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hl7.client import MllpClient, MllpError
from hl7.er7 import read_header
from hl7.fieldnames import describe
from hl7.samples import sample_order
from ris import bootstrap, transfer
from ris.domain.errors import DomainError, ValidationFailed
from ris.domain.model import Actor, AeRole, RemoteAE
from ris.domain.outbox import OutboxTask, TaskKind, TaskState
from ris.domain.users import Role
from ris.logs import configure_logging
from ris.services import RisService
from ris.settings import SECRET_SETTINGS, Settings, SettingsError, describe_settings, load_settings

Command = Callable[[argparse.Namespace, Settings], int]


def _service(settings: Settings) -> RisService:
    service = bootstrap.build_service(settings)
    bootstrap.prepare_database(service)
    return service


def _actor() -> Actor:
    return Actor("cli", getpass.getuser())


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    return bootstrap.serve(settings)


def cmd_listen(args: argparse.Namespace, settings: Settings) -> int:
    return bootstrap.run_listeners(settings)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    service = bootstrap.build_service(settings)
    service.db.upgrade()
    print(f"database schema at {service.schema_status().revision}")
    return 0


def cmd_db_status(args: argparse.Namespace, settings: Settings) -> int:
    status = bootstrap.build_service(settings).schema_status()
    if not status.reachable:
        print(f"database unreachable: {status.error}")
        return 1
    state = "up to date" if status.up_to_date else f"needs `ris db upgrade` to {status.head}"
    print(f"schema {status.revision or 'empty'}: {state}")
    return 0 if status.up_to_date else 1


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    # Reading a large file builds millions of objects that live until the end and form no garbage
    # cycles: the cyclic collector would walk all of them again at each of its passes (a tenth of
    # a 100k import). It is off while reading; then what was read is left out of its passes.
    gc.disable()
    try:
        numbered = transfer.read_orders(path, settings.zone, args.format)
    except transfer.ImportRejected as exc:
        for row_problem in exc.problems:
            print(f"{path}: {row_problem}", file=sys.stderr)
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DomainError(f"{path}: cannot be read: {exc}") from exc
    finally:
        gc.freeze()
        gc.enable()
    try:
        count = _service(settings).import_orders([order for _line, order in numbered], _actor())
    except ValidationFailed as exc:  # conflicts with stored orders, reported by row
        for problem in exc.problems:
            line = numbered[int(problem.field.strip("[]"))][0]
            print(f"{path}: line {line}: {problem.message}", file=sys.stderr)
        raise DomainError(f"{len(exc.problems)} row(s) clash with stored orders; nothing was imported") from None
    print(f"imported {count} item(s) from {path}")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    items = _service(settings).export_items(include_final=not args.open_only)
    fmt = args.format or (transfer.file_format(Path(args.output)) if args.output else "json")
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            count = transfer.write_items(items, out, fmt)
        print(f"exported {count} item(s) to {args.output}", file=sys.stderr)
    else:
        transfer.write_items(items, sys.stdout, fmt)
    return 0


def cmd_ae_add(args: argparse.Namespace, settings: Settings) -> int:
    ae = RemoteAE(
        ae_title=args.ae_title,
        host=args.host,
        port=args.port,
        roles=frozenset(AeRole(role) for role in args.role),
        own_items_only=args.own_items_only,
        description=args.description,
    )
    _service(settings).add_remote_ae(ae, _actor())
    print(f"added remote AE {args.ae_title}")
    return 0


def cmd_ae_list(args: argparse.Namespace, settings: Settings) -> int:
    aes = _service(settings).list_remote_aes()
    print(f"{'AE title':<16}  {'host':<20}  {'port':>5}  roles")
    for ae in aes:
        flags = sorted(ae.roles) + (["own-items-only"] if ae.own_items_only else [])
        print(f"{ae.ae_title:<16}  {ae.host or '*':<20}  {ae.port or '':>5}  {', '.join(flags)}")
    return 0


def cmd_ae_remove(args: argparse.Namespace, settings: Settings) -> int:
    _service(settings).remove_remote_ae(args.ae_title, _actor())
    print(f"removed remote AE {args.ae_title}")
    return 0


def cmd_outbox_list(args: argparse.Namespace, settings: Settings) -> int:
    tasks = _service(settings).list_outbox_tasks(
        state=TaskState(args.state) if args.state else None,
        kind=TaskKind(args.kind) if args.kind else None,
        limit=args.limit,
    )
    print(
        f"{'id':>6}  {'kind':<12}  {'destination':<21}  {'state':<7}  {'tries':>5}  {'next attempt (UTC)':<19}  subject"
    )
    for task in tasks:
        print(_task_line(task))
        if task.last_error and task.state is not TaskState.SENT:
            print(f"{'':>8}last error: {task.last_error}")
    return 0


def _task_line(task: OutboxTask) -> str:
    when = task.sent_at if task.state is TaskState.SENT else task.next_attempt_at
    shown = when.strftime("%Y-%m-%d %H:%M:%S") if when else ""
    return (
        f"{task.id:>6}  {task.kind:<12}  {task.destination:<21}  {task.state:<7}  {task.attempts:>5}  "
        f"{shown:<19}  {task.subject}"
    )


def cmd_outbox_retry(args: argparse.Namespace, settings: Settings) -> int:
    task = _service(settings).retry_outbox_task(args.task_id, _actor())
    print(f"task {task.id} ({task.kind} to {task.destination}) is due now; the listener process sends it")
    return 0


def cmd_user_token(args: argparse.Namespace, settings: Settings) -> int:
    token = _service(settings).create_api_token(args.username, args.name, _actor())
    print(token)
    print(
        f"API token for {args.username}: shown only now, keep it safe (send it as Authorization: Bearer)",
        file=sys.stderr,
    )
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise DomainError("the two passwords differ; nothing was changed")
    return password


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    user = _service(settings).create_user(args.username, _read_password(args), Role(args.role), _actor())
    print(f"added user {user.username} ({user.role})")
    return 0


def cmd_user_list(args: argparse.Namespace, settings: Settings) -> int:
    print(f"{'user':<24}  {'role':<10}  state")
    for user in _service(settings).list_users():
        print(f"{user.username:<24}  {user.role:<10}  {'active' if user.active else 'disabled'}")
    return 0


def cmd_user_disable(args: argparse.Namespace, settings: Settings) -> int:
    _service(settings).set_user_active(args.username, False, _actor())
    print(f"disabled user {args.username}; they can no longer log in")
    return 0


def cmd_user_enable(args: argparse.Namespace, settings: Settings) -> int:
    _service(settings).set_user_active(args.username, True, _actor())
    print(f"enabled user {args.username}")
    return 0


def cmd_user_passwd(args: argparse.Namespace, settings: Settings) -> int:
    _service(settings).set_password(args.username, _read_password(args), _actor())
    print(f"changed the password of {args.username}")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    for env_name, _default, help_text in describe_settings():
        name = env_name.removeprefix("RIS_").lower()
        value = getattr(settings, name)
        shown = ("(set)" if value else "") if name in SECRET_SETTINGS else value
        print(f"{env_name:<28} = {shown!s:<40} # {help_text}")
    return 0


def cmd_hl7_send(args: argparse.Namespace, settings: Settings) -> int:
    if args.sample:
        messages = [sample_order(dt.datetime.now(settings.zone))]
    else:
        try:
            messages = split_messages(Path(args.file).read_bytes().decode(args.encoding))
        except (OSError, UnicodeDecodeError) as exc:
            raise DomainError(f"{args.file}: cannot be read: {exc}") from exc
        if not messages:
            raise DomainError(f"{args.file}: no HL7 message in it (each starts with MSH)")
    host, _, port = (args.to or f"127.0.0.1:{settings.hl7_port}").rpartition(":")
    context = ssl.create_default_context(cafile=args.tls_ca) if args.tls_ca else None
    failed = 0
    with MllpClient(host or "127.0.0.1", int(port), timeout=args.timeout, ssl_context=context) as client:
        for message in messages:
            try:
                ack = client.send(message)
            except MllpError as exc:
                print(f"{read_header(message).control_id}: no ACK: {exc}")
                failed += 1
                continue
            print(f"{ack.control_id}: {ack.code}{' ' + ack.text if ack.text else ''}")
            for error in ack.errors:
                print(f"    {error}")
            failed += not ack.accepted
    return 1 if failed else 0


def split_messages(text: str) -> list[str]:
    """The HL7 messages in a file: each starts with an MSH line; segments end with CR, LF or CRLF."""
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    messages: list[list[str]] = []
    for line in lines:
        if line.startswith("MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return ["\r".join(segments) + "\r" for segments in messages]


def cmd_hl7_log(args: argparse.Namespace, settings: Settings) -> int:
    entries = _service(settings).message_journal(
        limit=args.limit, failures_only=args.errors, control_id=args.control_id or ""
    )
    for entry in entries:
        received = entry.received_at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M:%S")
        sender = f"{entry.sending_application}/{entry.sending_facility}"
        order = f"order={entry.order_id}" if entry.order_id else ""
        print(
            f"{received}  {entry.ack_code:<2}  {sender:<24}  {entry.control_id:<22}  {entry.message_type:<8}  {order}"
        )
        if entry.error:
            print(f"    {entry.error}")
        if args.show:
            for label, raw in (("message", entry.raw), ("ack", entry.ack)):
                print(f"    {label}:")
                for segment in raw.decode("utf-8", errors="replace").split("\r"):
                    if segment:
                        print(f"      {segment}")
    return 0


def cmd_hl7_mapping(args: argparse.Namespace, settings: Settings) -> int:
    mapping = bootstrap.hl7_mapping(settings)
    print("Fields (first field with a value wins):")
    for target, rule in mapping.fields.items():
        sources = ", ".join(describe(path) for path in rule.sources)
        print(f"  {target:<34} {rule.kind:<12} {sources}")
    print("Order control (ORC-1/ORC-5):")
    for (control, status), action in mapping.order_control.items():
        print(f"  {control}/{status:<4} {action}")
    print("Priorities (ORC-7.6, TQ1-9): " + ", ".join(f"{code}={value}" for code, value in mapping.priorities.items()))
    for station in mapping.station_rules:
        where = f" at {station.location}" if station.location else ""
        print(f"Station rule: {station.modality}{where} -> {station.station_ae} {station.station_name}".rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ris", description="RIS worklist and MPPS broker")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        handler: Command,
        help_text: str,
        parent: argparse._SubParsersAction[argparse.ArgumentParser] = commands,
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    add("serve", cmd_serve, "run the site: listeners (DICOM, HL7, outbox) and the web application")
    add("listen", cmd_listen, "run only the listener process (`ris serve` starts it for you)")
    add("config", cmd_config, "show the effective settings and where each can be set")

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    add("upgrade", cmd_db_upgrade, "migrate the database schema to this version", db)
    add("status", cmd_db_status, "show the database schema version", db)

    imp = add("import", cmd_import, "import worklist items from a JSON or CSV file (all or nothing)")
    imp.add_argument("file")
    imp.add_argument("--format", choices=("json", "csv"), help="default: from the file name")

    exp = add("export", cmd_export, "export worklist items as JSON or CSV")
    exp.add_argument("--format", choices=("json", "csv"), help="default: from --output, else json")
    exp.add_argument("--output", "-o", help="file to write (default: standard output)")
    exp.add_argument("--open-only", action="store_true", help="leave out completed, discontinued, canceled")

    hl7 = commands.add_parser("hl7", help="HL7 interface: send test messages, the journal, the mapping")
    hl7_commands = hl7.add_subparsers(dest="hl7_command", required=True)
    send = add("send", cmd_hl7_send, "send HL7 messages from a file (or a sample order) over MLLP", hl7_commands)
    source = send.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="file with one or more messages, each starting with MSH")
    source.add_argument("--sample", action="store_true", help="send a sample new order (ORM^O01)")
    send.add_argument("--to", help="host:port of the listener (default: 127.0.0.1 and hl7_port)")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each ACK")
    send.add_argument("--encoding", default="utf-8", help="encoding of FILE (default utf-8)")
    send.add_argument("--tls-ca", help="use TLS, trusting the CA certificates in this PEM file")
    log = add("log", cmd_hl7_log, "show the journal of received HL7 messages, newest first", hl7_commands)
    log.add_argument("--limit", type=int, default=20)
    log.add_argument("--errors", action="store_true", help="only messages not answered AA")
    log.add_argument("--control-id", help="only messages with this MSH-10")
    log.add_argument("--show", action="store_true", help="print each message and its ACK")
    add("mapping", cmd_hl7_mapping, "show the effective HL7 field mapping and order control table", hl7_commands)

    ae = commands.add_parser("ae", help="remote AEs: stations and destinations").add_subparsers(
        dest="ae_command", required=True
    )
    ae_add = add("add", cmd_ae_add, "register a remote AE", ae)
    ae_add.add_argument("ae_title")
    ae_add.add_argument("--host", default="", help="host name or address (stations: empty = any host)")
    ae_add.add_argument("--port", type=int, default=0, help="port we call it on (destinations)")
    ae_add.add_argument("--role", action="append", required=True, choices=[r.value for r in AeRole])
    ae_add.add_argument("--own-items-only", action="store_true", help="station sees only items for its AE title")
    ae_add.add_argument("--description", default="")
    add("list", cmd_ae_list, "list remote AEs", ae)
    ae_remove = add("remove", cmd_ae_remove, "remove a remote AE", ae)
    ae_remove.add_argument("ae_title")

    user = commands.add_parser("user", help="web users, their roles and API tokens").add_subparsers(
        dest="user_command", required=True
    )
    user_add = add("add", cmd_user_add, "add a web user (the password is asked for, or read from stdin)", user)
    user_add.add_argument("username")
    user_add.add_argument("--role", required=True, choices=[r.value for r in Role])
    user_add.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    add("list", cmd_user_list, "list web users", user)
    for name, handler, help_text in (
        ("disable", cmd_user_disable, "disable a user: no more logins, open sessions end"),
        ("enable", cmd_user_enable, "enable a disabled user again"),
    ):
        add(name, handler, help_text, user).add_argument("username")
    passwd = add("passwd", cmd_user_passwd, "set a user's password", user)
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    user_token = add("token", cmd_user_token, "create an API token acting as USERNAME (printed once)", user)
    user_token.add_argument("username")
    user_token.add_argument("--name", default="", help="what the token is for, e.g. the program using it")

    outbox = commands.add_parser("outbox", help="deliveries to PACS, reporting and the HIS").add_subparsers(
        dest="outbox_command", required=True
    )
    outbox_list = add("list", cmd_outbox_list, "list outbox tasks, newest first", outbox)
    outbox_list.add_argument("--state", choices=[s.value for s in TaskState])
    outbox_list.add_argument("--kind", choices=[k.value for k in TaskKind])
    outbox_list.add_argument("--limit", type=int, default=50)
    outbox_retry = add("retry", cmd_outbox_retry, "send a FAILED task again, or a PENDING one now", outbox)
    outbox_retry.add_argument("task_id", type=int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"ris: bad setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        return int(args.handler(args, settings))
    except DomainError as exc:
        print(f"ris: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
