"""The `kho` command: warehouse, simulator, sync and demo. Errors print a clear message, not a traceback."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kho.config import PROJECT_ROOT, KhoConfig
from kho.errors import ConfigError, KhoError, UsageError

if TYPE_CHECKING:
    from kho.simulator.generate import WorldSpec
    from kho.simulator.server import ServerOptions
    from kho.sources import Entity
    from kho.warehouse.access import AccessFile

Handler = Callable[[argparse.Namespace, KhoConfig], int]


def _warehouse(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.warehouse import embedded, health, patroni

    action = args.action
    if action == "migrate":
        return _migrate(config)
    if action == "destroy":
        embedded.destroy(config)
        print(f"removed the embedded warehouse under {config.home / 'pg'}")
        return 0
    if action in ("switchover", "failover"):
        change = (patroni.switchover if action == "switchover" else patroni.failover)(config, args.to)
        print(change.render())
        return 0
    if action == "rejoin":
        print(embedded.rejoin(config, args.node, reinit=args.reinit).render())
        return 0
    if action in ("backup", "restore", "verify-restore"):
        return _backup(args, config)
    if action == "down":
        return _down(config)
    if action == "up":
        state = embedded.up(config)
        print(state.render())
        return 0 if state.healthy else 1
    state = health.status(config)
    print(state.render())
    print(_backup_status(config))
    return 0 if state.healthy else 1


def _down(config: KhoConfig) -> int:
    """Stop the nodes and etcd, then say so: a stopped warehouse is what was asked for, not an unhealthy one."""
    from kho.warehouse import embedded
    from kho.warehouse.layout import layout

    embedded.down(config)
    for member in layout(config).members:
        print(f"{member.name}  {member.host}:{member.port}  stopped")
    etcd = "" if config.ha.etcd_hosts else " and etcd"
    print(f"kho warehouse down: the warehouse's nodes{etcd} are stopped (`kho warehouse up` starts them again)")
    return 0


def _backup_status(config: KhoConfig) -> str:
    from kho.warehouse import backup, patroni

    why = patroni.backups_unsupported(config)
    if why is not None:
        return f"backups: none ({why})"
    if not config.ha.backup_repo.is_dir():
        return f"backups: no repository at {config.ha.backup_repo} yet (`kho warehouse up` makes it)"
    try:
        return backup.status(config).render()
    except KhoError as exc:
        return f"backups: unknown ({exc})"


def _backup(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.warehouse import backup

    if args.action == "backup":
        print(backup.backup(config, args.type).render())
        return 0
    if args.action == "restore":
        to: Literal["latest"] | dt.datetime = "latest" if args.to == "latest" else _timestamp(args.to)
        print(backup.restore(config, to, args.into, port=args.port, start=args.start).render())
        return 0
    try:
        report = backup.verify_restore(config, args.label)
    except backup.VerifyFailed as failed:  # the restore worked and differs: the report says where, exit 1
        print(failed.report.render())
        return 1
    print(report.render())
    return 0 if report.ok else 1


def _timestamp(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--to {text!r}: give 'latest' or a time such as 2026-11-30T21:00:00+07:00") from None
    if moment.tzinfo is None:
        raise UsageError(f"--to {text!r} has no time zone; add one, e.g. {text}+07:00 (Vietnam) or {text}Z (UTC)")
    return moment


def _migrate(config: KhoConfig) -> int:
    from kho.warehouse.connection import connect
    from kho.warehouse.migrations import migrate

    with connect(config.warehouse, autocommit=True) as conn:
        report = migrate(conn)
    for line in report.lines():
        print(line)
    return 0


def _world_spec(args: argparse.Namespace) -> WorldSpec:
    from kho.simulator.generate import WorldSpec

    return WorldSpec(seed=args.seed, citizens=args.citizens, days=args.days, defect_rate=args.defect_rate)


def _server_options(args: argparse.Namespace, config: KhoConfig) -> ServerOptions:
    from kho.simulator.faults import FaultSpec
    from kho.simulator.server import ServerOptions

    try:
        faults = FaultSpec(error_rate=args.error_rate, slow_rate=args.slow_rate, slow_seconds=args.slow_seconds,
                           drop_rate=args.drop_rate, seed=args.seed)
    except ValueError as exc:
        raise UsageError(f"fault rates: {exc}") from exc
    if args.token_ttl <= 0 or args.rate < 0 or (args.burst is not None and args.burst < 1):
        raise UsageError("--token-ttl must be positive, --rate 0 (unlimited) or more, --burst 1 or more")
    return ServerOptions(
        credentials=None if args.no_auth else config.ensure_simulator_credentials(),
        token_ttl_s=args.token_ttl, rate_per_s=args.rate or None, burst=args.burst, faults=faults,
    )


def _simulate_serve(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.simulator.server import serve_forever
    from kho.simulator.world import World

    spec = _world_spec(args)
    options = _server_options(args, config)
    served = World.build(spec)
    served.advance(spec.days)  # serve the state as of the end of day D

    def ready(url: str) -> None:
        print(f"registry simulator on {url} (seed {spec.seed}, {spec.citizens} citizens, day {served.day}, "
              f"defect rate {spec.defect_rate})  — ctrl-C to stop", flush=True)
        for entity in served.entities:
            print(f"  GET {url}{entity.endpoint}  ({served.count(entity)} records)")
        if options.credentials is None:
            print("  open: no token needed (--no-auth)")
        else:
            where = ("KHO_REGISTRY_CLIENT_SECRET" if config.registry_client_secret
                     else str(config.simulator_credentials_file))
            print(f"  POST {url}/oauth/token  client {options.credentials.client_id!r} (secret in {where}), "
                  f"tokens live {options.token_ttl_s:g} s")
        rate = f"{options.rate_per_s:g} requests/s per client" if options.rate_per_s else "no rate limit"
        print(f"  {rate}; faults: {args.error_rate:g} errors, {args.slow_rate:g} slow ({args.slow_seconds:g} s), "
              f"{args.drop_rate:g} dropped", flush=True)

    serve_forever(served, args.host, args.port, options=options, on_ready=ready)
    return 0


def _simulate_export(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.simulator.export import MANIFEST_NAME, ExportFormat, export
    from kho.simulator.spec import simulated_entities

    simulated = [s.entity for s in simulated_entities()]  # a registry naming no simulation module is not exported
    entities = [e for e in simulated if args.registry in (None, e.registry) and args.entity in (None, e.name)]
    if not entities:
        known = ", ".join(e.qualified_name for e in simulated)
        raise UsageError(f"no simulated entity matches --registry {args.registry} --entity {args.entity}; "
                          f"simulated: {known}")
    formats: tuple[ExportFormat, ...] = ("csv", "jsonl") if args.format == "both" else (args.format,)
    spec = _world_spec(args)
    manifest = export(spec, args.out, entities=entities, day=range(spec.days + 1), formats=formats,
                      gzip=args.gzip)
    truth = f", ground truth: {manifest.ground_truth.path}" if manifest.ground_truth else ""
    print(f"exported to {Path(args.out).resolve()} (manifest: {MANIFEST_NAME}{truth}):")
    print(manifest.summary())
    return 0


def _simulate_stats(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.simulator.statistics import format_table, summary, timed

    measures, seconds = timed(_world_spec(args))
    print(format_table(measures))
    print(f"\n{summary(measures)}; measured in {seconds:.1f} s (the world's replay included)")
    return 0 if all(m.ok for m in measures) else 1


def _entity(args: argparse.Namespace) -> Entity:
    """The entity the command line names; one the catalogue lacks is a usage error."""
    from kho.sources import get_entity

    try:
        return get_entity(args.registry, args.entity)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _sync(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.extract.api import RetryPolicy
    from kho.load.pipeline import SyncOptions, sync_api

    # A person waits for this sync: a registry refusing connections is reported at once, not retried for minutes.
    options = SyncOptions(full_refresh=args.full_refresh, retry=RetryPolicy(retry_refused=False))
    entries = sync_api(config, _entity(args), options)
    for entry in entries:
        print(entry.summary())
    return 0


def _quality(args: argparse.Namespace, config: KhoConfig) -> int:
    """`kho quality validate`: a raw gate over batches chosen by hand (a re-check after a fix, or batches loaded
    outside Airflow); `kho quality prune`: the retention rule now."""
    from kho.warehouse.connection import connect

    if args.quality_command == "prune":
        from kho.quality.retention import prune

        with connect(config.warehouse, autocommit=True) as conn:
            pruned = prune(config, conn, days=args.days)
        print(f"removed {pruned.results} GX result file(s) and page(s) and {pruned.flags} flagged row(s) from "
              f"before {pruned.cutoff.isoformat(timespec='seconds')}")
        return 0
    from kho.quality import validate_raw

    entity = _entity(args)
    first, last = args.batches
    result = validate_raw(config, entity.raw_table, [first, last], run_id=args.run_id)
    print(f"{result.table} ({result.batch_range}): {result.state}, {len(result.results)} expectations, "
          f"{len(result.failures)} failed, {result.flagged} rows flagged (validation {result.validation_id})")
    for r in result.failures:
        print(f"  {r.severity:8s} {r.rule or r.type}({r.column or 'table'}): {r.unexpected_count} unexpected")
    return 0


def _batch_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("..")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a batch id or a range like 120..141") from None
    if low > high or low < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give the first batch id, then the last (both positive)")
    return low, high


def _load(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.load.pipeline import load_file

    entity = _entity(args)
    path = Path(args.file)
    if args.no_progress or not path.is_file():
        entry = load_file(config, entity, path, fmt=args.format)
    else:
        from tqdm import tqdm

        # Drawn only once the load has run a second: a file refused at once gets its one line of error, no bar.
        with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"{entity.qualified_name}",
                  file=sys.stderr, delay=1.0, disable=None) as bar:  # None: no bar where stderr is no terminal
            def progress(rows: int, done: int) -> None:
                bar.set_postfix_str(f"{rows:,} rows", refresh=False)
                bar.update(done - bar.n)

            entry = load_file(config, entity, path, fmt=args.format, on_progress=progress)
    print(entry.summary())
    return 0


def _build(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.build.run import BuildPlan, build, local_today, parse_as_of, stale_sources

    run_id = args.run_id or f"manual__{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}"
    plan = BuildPlan(run_id, parse_as_of(args.as_of, default=local_today()), args.full_refresh)
    report = build(config, plan)
    publication = report.publication
    print(f"published #{publication.publication_id} (run {plan.run_id}, as of {plan.as_of}) at "
          f"{publication.published_at.isoformat(timespec='seconds')}:")
    for change in publication.changes:
        how = "created" if change.recreated else f"+{change.inserted} ~{change.updated} -{change.deleted}"
        print(f"  {change.mart:<56} {change.rows:>9} rows  {how}")
    print(f"dbt docs: {report.docs}")
    drew = _write_report(config, None)
    stale = stale_sources(config)
    for source in stale:
        print(f"kho: stale registry source {source}", file=sys.stderr)
    return 1 if not drew or any(s.endswith("error") for s in stale) else 0


def _write_report(config: KhoConfig, out: Path | None) -> bool:
    """The run report; after a build, one that cannot be written says why and fails the command, but the
    publication stands (the data is already published)."""
    import psycopg

    from kho.report.page import write_report

    try:
        written = write_report(config, out)
    except (KhoError, psycopg.Error, OSError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"kho: run report not written: {why}", file=sys.stderr)
        return False
    empty = f"; no data yet for {', '.join(written.empty)}" if written.empty else ""
    print(f"run report: {written.path} ({len(written.drawn)} plots{empty})")
    return True


def _report(args: argparse.Namespace, config: KhoConfig) -> int:
    """`kho report`: the run report page from the warehouse as it is now."""
    return 0 if _write_report(config, args.out) else 1


def _docs(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho import docs

    def ready(url: str) -> None:
        print(f"kho docs on {url}  — ctrl-C to stop", flush=True)
        for section in docs.sections(config):
            where = f"{url}{section.path}/" if section.exists else f"none yet: {section.made_by}"
            print(f"  {section.title:<10} {where}", flush=True)

    docs.serve(config, args.host, config.docs_port if args.port is None else args.port, on_ready=ready)
    return 0


def _generate(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho import generate

    root: Path = args.out or config.project_root
    generated = generate.artifacts()
    if args.check:
        stale = generate.check(root, generated)
        for found in stale:
            print(f"  {found.path} ({found.state})")
        if stale:
            print(f"kho generate --check: {len(stale)} generated file(s) under {root} differ from what kho.sources "
                  "gives; run `kho generate` and commit the result", file=sys.stderr)
            return 1
        print(f"kho generate --check: all {len(generated)} generated files under {root} match kho.sources")
        return 0
    changed = generate.write(root, generated)
    for found in changed:
        print(f"{'removed' if found.state == 'orphan' else 'wrote'} {found.path}")
    print(f"kho generate: {len(changed)} file(s) changed, {len(generated)} generated files under {root} up to date")
    return 0


def _manifest(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.build.dbt import dag_manifest, ensure_manifest

    if args.check:
        print(f"kho manifest --check: up to date, {dag_manifest(config)}")  # missing or stale: one line, exit 1
        return 0
    path, written = ensure_manifest(config)
    print(f"kho manifest: {'wrote' if written else 'up to date,'} {path}")
    return 0


def _demo(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho import console, demo
    from kho.simulator import calendar as cal
    from kho.warehouse import embedded

    print(f"kho demo: KHO_HOME={config.home}; dbt, Airflow and Cosmos write to {console.log_file(config)}",
          flush=True)
    print(embedded.up(config).render(), flush=True)
    running = demo.running_simulator(config)
    if running is not None:  # `kho up` or `kho simulate serve` serves the registries already: sync what it serves
        print(f"simulated registries: reusing the simulator already on {running.url} (day {running.day}); "
              "its feeds are synced as they are", flush=True)
        as_of = dt.date.fromordinal(cal.day_ord(running.day))
        outcomes = demo.run(config, lambda day: None, days=0, as_of=as_of, full_refresh=args.full_refresh)
        demo.summary(config, outcomes, agencies=demo.apply_access(config))
        return 0
    return _demo_with_own_simulator(args, config)


def _demo_with_own_simulator(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho import demo
    from kho.simulator import ALL_DEFECT_KINDS, World
    from kho.simulator import calendar as cal
    from kho.simulator.generate import WorldSpec
    from kho.simulator.server import ServerOptions, serve_in_thread

    spec = WorldSpec(config.simulator_seed, config.simulator_citizens, demo.DEMO_DAYS, demo.DEMO_DEFECT_RATE,
                     ALL_DEFECT_KINDS - demo.DEMO_LEAVES_OUT)
    world = World.build(spec)
    options = ServerOptions(credentials=config.ensure_simulator_credentials())
    simulator = serve_in_thread(world, config.simulator_host, config.simulator_port, options)
    print(f"simulated registries: {spec.citizens} citizens (seed {spec.seed}), {spec.days} days of feeds, "
          f"{spec.defect_rate:.0%} defective records, on {simulator.url}", flush=True)
    try:
        as_of = dt.date.fromordinal(cal.day_ord(spec.days))
        outcomes = demo.run(config, world.advance, days=spec.days, as_of=as_of, full_refresh=args.full_refresh)
        agencies = demo.apply_access(config)
        demo.summary(config, outcomes, agencies=agencies)
    finally:
        simulator.stop()
    return 0


def _platform_up(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.services import stack

    stack.up(config)
    return 0


def _platform_down(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.services import stack

    stack.down(config)
    return 0


def _access_file(args: argparse.Namespace) -> AccessFile:
    from kho.sources.reference import province_codes_2025
    from kho.warehouse import access

    return access.load(args.file, known_provinces=province_codes_2025())


def _access(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.warehouse import access
    from kho.warehouse.access import roles
    from kho.warehouse.connection import connect_admin

    declared = _access_file(args)
    if args.access_command == "audit":
        return _access_audit(args, config, declared)
    if args.access_command == "credentials":
        agency = roles.require_declared(declared.agencies, args.agency)
        password = roles.read_password(config, agency.slug)
        if password is None:
            raise ConfigError(f"no password for {agency.role} yet ({roles.secret_file(config, agency.slug)}): "
                              "run `kho access apply` first")
        print(roles.connection_uri(config, agency, password))
        return 0
    with connect_admin(config.warehouse) as conn:
        run = access.apply if args.access_command == "apply" else access.check
        report = run(conn, config, declared)
    for line in report.lines():
        print(line)
    if args.access_command == "apply":
        print(f"kho access apply: {len(report.changes)} change(s); the database matches {args.file}"
              if report.changes else f"kho access apply: nothing to change, the database matches {args.file}")
        return 0
    if report.clean:
        print(f"kho access check: no drift, the database matches {args.file}")
        return 0
    print(f"kho access check: {len(report.changes)} difference(s) from {args.file}; `kho access apply` removes "
          "them", file=sys.stderr)
    return 1


def _access_audit(args: argparse.Namespace, config: KhoConfig, declared: AccessFile) -> int:
    from kho.warehouse import audit
    from kho.warehouse.access import roles

    agencies = [roles.require_declared(declared.agencies, args.agency)] if args.agency else declared.agencies
    records = audit.read(config, roles=[a.role for a in agencies], since=_since(args.since))
    for record in records:
        statement = " ".join(record.statement.split())
        what = record.kind if record.kind != "pgaudit" else f"{record.audit_class or ''} {record.command or ''}"
        objects = ",".join(record.objects) or "-"
        print(f"{record.logged_at.isoformat(timespec='milliseconds')}  {record.node:<21} {record.role:<20} "
              f"{what.strip():<14} {objects:<48} {statement}")
    print(f"kho access audit: {len(records)} statement(s) by {', '.join(a.role for a in agencies)}"
          + (f" since {args.since}" if args.since else "")
          + (f"; {records.skipped} log line(s) could not be read as audit records" if records.skipped else ""),
          file=sys.stderr)
    return 0


def _since(text: str | None) -> dt.datetime | None:
    """An ISO date or time (Asia/Ho_Chi_Minh unless it names its zone), or a span back from now: 30min, 2h, 7d."""
    import re
    import zoneinfo

    if not text:
        return None
    span = re.fullmatch(r"\s*([0-9]+)\s*(min|h|d)\s*", text)
    if span:
        unit = {"min": "minutes", "h": "hours", "d": "days"}[span.group(2)]
        return dt.datetime.now(dt.UTC) - dt.timedelta(**{unit: int(span.group(1))})
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: give a date or time (2026-11-30, 2026-11-30T08:00+07:00) or a span "
                          "back from now (30min, 2h, 7d)") from None
    return when if when.tzinfo else when.replace(tzinfo=zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh"))


def _status(args: argparse.Namespace, config: KhoConfig) -> int:
    """`kho status`: the operator's one screen; exit 1 when something on it needs attention."""
    from kho import status
    from kho.screen import wants_colour

    report = status.gather(config)
    print(report.render(colour=wants_colour(sys.stdout)))
    return 1 if report.attention else 0


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rows") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 or more")
    return value


def _runs(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho import airflow_runs, history
    from kho.screen import wants_colour

    found = airflow_runs.runs(config, dag_id=args.dag, limit=args.limit)
    if not found:
        print(f"kho runs: no runs{' of ' + args.dag if args.dag else ''} in {airflow_runs.metadata_db(config)}",
              file=sys.stderr)
        return 0
    for line in history.render_runs(found, dt.datetime.now(dt.UTC), colour=wants_colour(sys.stdout)):
        print(line)
    return 0


def _ledger(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho import history
    from kho.screen import wants_colour

    query = history.LedgerQuery(args.registry, args.entity, _since(args.since), args.limit)
    rows = history.ledger(config, query)
    if not rows:
        print("kho ledger: no batch matches", file=sys.stderr)
        return 0
    for line in history.render_ledger(rows, colour=wants_colour(sys.stdout)):
        print(line)
    print(f"kho ledger: {len(rows)} batch(es), newest first" + (f" (at most {args.limit})"
          if len(rows) == args.limit else ""), file=sys.stderr)
    return 0


def _world_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--citizens", type=int, default=None, help="number of citizens (default KHO_SIM_CITIZENS)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default KHO_SIM_SEED)")
    parser.add_argument("--days", type=int, default=0, help="daily change feeds after the initial state (0)")
    parser.add_argument("--defect-rate", type=float, default=0.0, help="share of records with injected defects")


def _entity_arguments(parser: argparse.ArgumentParser) -> None:
    """`<registry> <entity>`, each with its choices from the catalogue (kho.sources and KHO_REGISTRY_MODULES)."""
    from kho.sources import REGISTRIES

    parser.add_argument("registry", choices=[r.slug for r in REGISTRIES], help="the registry")
    parser.add_argument("entity", choices=_entity_names(), metavar="entity",
                        help="the registry's entity: " + "; ".join(
                            f"{r.slug}: {', '.join(e.name for e in r.entities)}" for r in REGISTRIES))


def _entity_names() -> list[str]:
    from kho.sources import ENTITIES

    return sorted({e.name for e in ENTITIES})


def _registry_filters(parser: argparse.ArgumentParser, what: str) -> None:
    from kho.sources import REGISTRIES

    parser.add_argument("--registry", default=None, choices=[r.slug for r in REGISTRIES],
                        help=f"only this registry's {what}")
    parser.add_argument("--entity", default=None, choices=_entity_names(), metavar="ENTITY",
                        help=f"only {what} of the entities of this name ({', '.join(_entity_names())})")


def _group(sub: argparse._SubParsersAction, name: str, text: str, dest: str) -> tuple[
        argparse.ArgumentParser, argparse._SubParsersAction]:
    """A command with actions (`kho warehouse up`): given alone, `kho` prints its help."""
    group = sub.add_parser(name, help=text, description=text)
    group.set_defaults(usage_of=group)
    return group, group.add_subparsers(dest=dest, title="actions", metavar="ACTION", help="one of:")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kho", description="kho: the provincial data warehouse",
        epilog="exit status: 0 done (or nothing needs attention), 1 the command failed or found a problem, "
               "2 the command line is wrong")
    parser.set_defaults(handler=None, usage_of=parser)
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND", help="one of:")

    _wh, wh_sub = _group(sub, "warehouse", "the warehouse's nodes under Patroni: lifecycle, failover, backups",
                        "action")
    for name, text in (("up", "start (or create) etcd and every node under Patroni, then migrate; idempotent"),
                       ("down", "stop every node (replicas first) and etcd"),
                       ("status", "each node's role, timeline, lag and slot; exit 1 if unhealthy"),
                       ("destroy", "stop everything and delete the nodes' data (keeps secrets and backups)"),
                       ("migrate", "apply the warehouse database's schema migrations (also part of up)")):
        wh_sub.add_parser(name, help=text).set_defaults(handler=_warehouse)
    for name, text in (("switchover", "planned change of primary, nothing lost (patronictl switchover)"),
                       ("failover", "unplanned change of primary (patronictl failover)")):
        change = wh_sub.add_parser(name, help=text)
        change.add_argument("--to", default=None, help="the node to promote (default: the synchronous standby, "
                            "else the replica with the least lag)")
        change.set_defaults(handler=_warehouse)
    rejoin = wh_sub.add_parser("rejoin", help="bring a stopped or failed node back as a replica (pg_rewind)")
    rejoin.add_argument("node", nargs="?", default=None, help="dc1, dc2, ... (default: every stopped node)")
    rejoin.add_argument("--reinit", action="store_true",
                        help="if it cannot rewind, clone it afresh from the primary (patronictl reinit)")
    rejoin.set_defaults(handler=_warehouse)
    bak = wh_sub.add_parser("backup", help="a pgBackRest backup of the primary, with what verify-restore checks")
    bak.add_argument("--type", choices=("auto", "full", "diff", "incr"), default="auto",
                     help="auto (default): full if none in 7 days, else incremental")
    bak.set_defaults(handler=_warehouse)
    res = wh_sub.add_parser("restore", help="restore a backup into a new directory, to a point in time")
    res.add_argument("--to", required=True, help="'latest' or a time with its zone (2026-11-30T21:00:00+07:00)")
    res.add_argument("--into", required=True, type=Path, help="an empty or new directory for the data")
    res.add_argument("--port", type=int, default=None, help="port the restored cluster will listen on")
    res.add_argument("--start", action="store_true", help="start it once restored")
    res.set_defaults(handler=_warehouse)
    ver = wh_sub.add_parser("verify-restore", help="restore into a scratch cluster and compare it with the "
                            "warehouse as of the backup")
    ver.add_argument("--label", default=None, help="the backup to verify (default: the newest)")
    ver.set_defaults(handler=_warehouse)

    _sim, sim_sub = _group(sub, "simulate", "simulated national registries", "sim_command")
    serve = sim_sub.add_parser("serve", help="serve the registries' APIs over HTTP (OAuth2, rate limit, faults)")
    _world_arguments(serve)
    serve.add_argument("--host", default=None, help="bind address (default KHO_SIM_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default KHO_SIM_PORT or 58080)")
    serve.add_argument("--token-ttl", type=float, default=300.0, help="access token lifetime, seconds (300)")
    serve.add_argument("--no-auth", action="store_true", help="serve without tokens (for poking with curl)")
    serve.add_argument("--rate", type=float, default=50.0, help="requests/s per client, 0 = unlimited (50)")
    serve.add_argument("--burst", type=int, default=None, help="requests a client may make at once (the rate)")
    serve.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500/502/503")
    serve.add_argument("--slow-rate", type=float, default=0.0, help="share of requests answered late")
    serve.add_argument("--slow-seconds", type=float, default=2.0, help="how late a slow answer is (2 s)")
    serve.add_argument("--drop-rate", type=float, default=0.0, help="share of connections dropped unanswered")
    serve.set_defaults(handler=_simulate_serve)
    exp = sim_sub.add_parser("export", help="write bulk export files (CSV / JSON Lines) with a manifest")
    _world_arguments(exp)
    exp.add_argument("--out", required=True, type=Path, help="directory for the files and manifest.json")
    exp.add_argument("--format", choices=("csv", "jsonl", "both"), default="both", help="file format (both)")
    exp.add_argument("--gzip", action="store_true", help="gzip every file (.gz)")
    _registry_filters(exp, "entities")
    exp.set_defaults(handler=_simulate_export)
    st = sim_sub.add_parser("stats", help="measure the world's statistics against published figures; exit 1 if "
                            "any is out of tolerance")
    _world_arguments(st)
    st.set_defaults(handler=_simulate_stats)

    sync = sub.add_parser("sync", help="pull one registry entity from its API into the warehouse (outside Airflow)")
    _entity_arguments(sync)
    sync.add_argument("--full-refresh", action="store_true", help="re-read from the beginning, ignore the watermark")
    sync.set_defaults(handler=_sync)

    load = sub.add_parser("load", help="load a registry export file (CSV/JSON Lines, .gz) as one batch")
    _entity_arguments(load)
    load.add_argument("file", help="e.g. population__citizens__day000.csv.gz from `kho simulate export`")
    load.add_argument("--format", choices=("csv", "jsonl"), default=None, help="default: from the file name")
    load.add_argument("--no-progress", action="store_true", help="no progress bar")
    load.set_defaults(handler=_load)

    _quality_parser, q_sub = _group(sub, "quality", "the quality gates outside Airflow: validate raw batches, "
                                    "prune results", "quality_command")
    q_val = q_sub.add_parser("validate", help="run a raw table's gate over a batch range (kho.quality_results, "
                                              "kho.quality_flags); exit 1 if a blocking expectation fails")
    _entity_arguments(q_val)
    q_val.add_argument("batches", type=_batch_range, help="a batch id or a range, e.g. 120..141 (kho.load_ledger)")
    q_val.add_argument("--run-id", default="manual", help="recorded as the validation's run (default manual)")
    q_prune = q_sub.add_parser("prune", help="remove GX results, Data Docs pages and flagged rows past retention")
    q_prune.add_argument("--days", type=int, default=None, help="keep this many days (default "
                                                               "KHO_QUALITY_RETENTION_DAYS, 30)")
    q_val.set_defaults(handler=_quality)
    q_prune.set_defaults(handler=_quality)

    build = sub.add_parser("build", help="build, audit and publish the shared datasets (dbt, GX) outside Airflow")
    build.add_argument("--as-of", default=None, help="the date the marts describe, YYYY-MM-DD (default: today in "
                                                      "Asia/Ho_Chi_Minh)")
    build.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    build.add_argument("--run-id", default=None, help="name of this build in kho.publications (default manual__<now>)")
    build.set_defaults(handler=_build)

    rep = sub.add_parser("report", help="write the run report: an HTML page of plots (loads, quarantine, quality, "
                         "insurance coverage, vital events) from the warehouse")
    rep.add_argument("--out", type=Path, default=None, help="write DIR/index.html (default $KHO_HOME/report, which "
                     "`kho docs` serves at /report/)")
    rep.set_defaults(handler=_report)

    acc, acc_sub = _group(sub, "access", "agency logins: roles, grants, row-level security, masked views, audit",
                          "access_command")
    acc.add_argument("--file", type=Path, default=PROJECT_ROOT / "access" / "agencies.yml",
                     help="the access file (default access/agencies.yml)")
    acc_sub.add_parser("apply", help="make the database match the access file (idempotent)").set_defaults(
        handler=_access)
    acc_sub.add_parser("check", help="report drift from the access file; exit 1 if any").set_defaults(
        handler=_access)
    cred = acc_sub.add_parser("credentials", help="print a libpq connection URI for an agency (standby first)")
    cred.add_argument("agency", help="the agency's slug, e.g. health")
    cred.set_defaults(handler=_access)
    aud = acc_sub.add_parser("audit", help="statements agencies ran, from every node's audit log")
    aud.add_argument("--agency", default=None, help="only this agency (slug)")
    aud.add_argument("--since", default=None, help="from this date/time, or a span back from now (2h, 7d)")
    aud.set_defaults(handler=_access)

    stat = sub.add_parser("status", help="one screen: last run per DAG, today's loads, quarantine, quality, "
                          "replication, backups, published datasets; exit 1 if something needs attention")
    stat.set_defaults(handler=_status)
    runs = sub.add_parser("runs", help="DAG run history from Airflow's metadata DB, newest first")
    runs.add_argument("--dag", default=None, help="only this DAG's runs, e.g. sync_population (default: every DAG)")
    runs.add_argument("--limit", type=_limit, default=20, help="at most this many runs (20)")
    runs.set_defaults(handler=_runs)
    led = sub.add_parser("ledger", help="load ledger rows, newest batch first: counts and cursor range per batch")
    _registry_filters(led, "batches")
    led.add_argument("--since", default=None, help="batches finished from this date/time (Asia/Ho_Chi_Minh unless "
                     "it names its zone), or a span back from now (30min, 2h, 7d)")
    led.add_argument("--limit", type=_limit, default=30, help="at most this many batches (30)")
    led.set_defaults(handler=_ledger)

    gen = sub.add_parser("generate", help="write every file derived from kho.sources (GX suites, dbt sources and "
                                          "staging, seeds, NFC table, docs/registries.md)")
    gen.add_argument("--check", action="store_true",
                     help="write nothing; list the generated files that differ and exit 1 if any (CI)")
    gen.add_argument("--out", type=Path, default=None, help="generate under this directory instead of the repository")
    gen.set_defaults(handler=_generate)

    man = sub.add_parser("manifest", help="write the dbt manifest build_warehouse renders its tasks from "
                         "($KHO_HOME/dbt/manifest/), if the dbt project changed since the last one (dbt parse)")
    man.add_argument("--check", action="store_true", help="write nothing; fail if it is missing or stale")
    man.set_defaults(handler=_manifest)

    up = sub.add_parser("up", help="start and leave running the warehouse, the simulated registries and Airflow "
                        "(api-server, scheduler, dag-processor, triggerer) with kho's DAGs unpaused; idempotent")
    up.set_defaults(handler=_platform_up)
    down = sub.add_parser("down", help="stop what `kho up` started: Airflow, its simulator, the warehouse")
    down.set_defaults(handler=_platform_down)
    docs = sub.add_parser("docs", help="serve the dbt docs, the Data Docs and the run report on one local web server")
    docs.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    docs.add_argument("--port", type=int, default=None, help="port (default KHO_DOCS_PORT or 58090; 0: any free one)")
    docs.set_defaults(handler=_docs)

    demo = sub.add_parser("demo", help="run the main job end to end on the embedded warehouse and simulator")
    demo.add_argument("--full-refresh", action="store_true",
                      help="re-read the registries from the beginning and rebuild the marts from scratch")
    demo.set_defaults(handler=_demo)
    return parser


def _fill_simulator_defaults(args: argparse.Namespace, config: KhoConfig) -> None:
    if getattr(args, "sim_command", None) in ("serve", "export", "stats"):
        args.citizens = args.citizens if args.citizens is not None else config.simulator_citizens
        args.seed = args.seed if args.seed is not None else config.simulator_seed
    if getattr(args, "sim_command", None) == "serve":
        args.host = args.host or config.simulator_host
        args.port = args.port or config.simulator_port


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `kho` command: 0 done, 1 failed (one line on stderr), 2 a usage error (argparse's, or an argument
    naming what does not exist), 130 interrupted."""
    from kho import console

    try:
        parser = build_parser()  # reads the registry catalogue, which KHO_REGISTRY_MODULES can break
    except KhoError as exc:
        print(f"kho: error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if args.handler is None:  # `kho` or `kho warehouse` alone: what there is to run, not just "required: command"
        args.usage_of.print_help(sys.stderr)
        return 2
    try:
        config = KhoConfig.from_env()
        _fill_simulator_defaults(args, config)
        console.setup(config)
        handler: Handler = args.handler
        return handler(args, config)
    except UsageError as exc:
        print(f"kho: error: {exc}", file=sys.stderr)
        return 2
    except KhoError as exc:
        print(f"kho: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kho: interrupted", file=sys.stderr)
        return 130
    finally:
        console.teardown()


if __name__ == "__main__":
    sys.exit(main())
