"""The `kho` command: warehouse, simulator, sync and demo. Errors print a clear message, not a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from kho.config import KhoConfig
from kho.errors import KhoError

Handler = Callable[[argparse.Namespace, KhoConfig], int]


def _warehouse(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.warehouse import cluster

    if args.action == "up":
        state = cluster.up(config)
    elif args.action == "down":
        cluster.down(config)
        state = cluster.status(config)
    elif args.action == "destroy":
        cluster.destroy(config)
        print(f"removed the embedded warehouse under {config.home / 'pg'}")
        return 0
    else:
        state = cluster.status(config)
    print(state.render())
    if args.action == "down":
        return 0
    return 0 if state.healthy else 1


def _simulate(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.simulator import World, serve_forever

    world = World.generate(seed=args.seed, count=args.citizens, defect_rate=args.defect_rate)

    def ready(url: str) -> None:
        print(f"population registry simulator: {len(world)} citizens (seed {args.seed}, defect rate "
              f"{args.defect_rate}, {len(world.defects)} defects) on {url}  — ctrl-C to stop", flush=True)

    serve_forever(world, args.host, args.port, on_ready=ready)
    return 0


def _sync(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho.load.pipeline import SyncOptions, sync_api
    from kho.sources import get_entity

    entry = sync_api(config, get_entity(args.registry, args.entity), SyncOptions(full_refresh=args.full_refresh))
    print(entry.summary())
    return 0


def _demo(args: argparse.Namespace, config: KhoConfig) -> int:
    from kho import demo
    from kho.simulator import World, serve_in_thread
    from kho.warehouse import cluster

    print(f"kho demo: KHO_HOME={config.home}", flush=True)
    print(cluster.up(config).render(), flush=True)
    world = World.generate(seed=config.simulator_seed, count=config.simulator_citizens)
    simulator = serve_in_thread(world, config.simulator_host, config.simulator_port)
    print(f"population registry simulator: {config.simulator_citizens} citizens on {simulator.url}", flush=True)
    try:
        outcomes = demo.run_dags(config, conf={"full_refresh": args.full_refresh})
        demo.summary(config, outcomes)
    finally:
        simulator.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kho", description="kho: the provincial data warehouse")
    sub = parser.add_subparsers(dest="command", required=True)

    wh = sub.add_parser("warehouse", help="the embedded primary + standby PostgreSQL warehouse")
    wh.add_argument("action", choices=("up", "down", "status", "destroy"))
    wh.set_defaults(handler=_warehouse)

    sim = sub.add_parser("simulate", help="simulated national registries")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser("serve", help="serve the population registry API over HTTP")
    serve.add_argument("--host", default=None, help="bind address (default KHO_SIM_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default KHO_SIM_PORT or 58080)")
    serve.add_argument("--citizens", type=int, default=None, help="number of citizens (default KHO_SIM_CITIZENS)")
    serve.add_argument("--seed", type=int, default=None, help="random seed (default KHO_SIM_SEED)")
    serve.add_argument("--defect-rate", type=float, default=0.0, help="share of records with injected defects")
    serve.set_defaults(handler=_simulate)

    sync = sub.add_parser("sync", help="pull one registry entity from its API into the warehouse (outside Airflow)")
    sync.add_argument("registry")
    sync.add_argument("entity")
    sync.add_argument("--full-refresh", action="store_true", help="re-read from the beginning, ignore the watermark")
    sync.set_defaults(handler=_sync)

    demo = sub.add_parser("demo", help="run the main job end to end on the embedded warehouse and simulator")
    demo.add_argument("--full-refresh", action="store_true", help="re-read the registry from the beginning")
    demo.set_defaults(handler=_demo)
    return parser


def _fill_simulator_defaults(args: argparse.Namespace, config: KhoConfig) -> None:
    if getattr(args, "sim_command", None) == "serve":
        args.host = args.host or config.simulator_host
        args.port = args.port or config.simulator_port
        args.citizens = args.citizens if args.citizens is not None else config.simulator_citizens
        args.seed = args.seed if args.seed is not None else config.simulator_seed


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = KhoConfig.from_env()
        _fill_simulator_defaults(args, config)
        handler: Handler = args.handler
        return handler(args, config)
    except KhoError as exc:
        print(f"kho: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kho: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
