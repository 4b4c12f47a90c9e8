"""Simulator HTTP benchmark: requests per second of a page of 500 citizens, and a whole extraction's rate.

    uv run python bench/serve.py [--citizens 20000] [--seconds 3] [--repeat 5] [--against REF]

Four measures of one server:
- `page req/s`: one keep-alive client GETs the first 500 citizens again and again for `--seconds`;
- `CPU ms/page`: the CPU those pages cost: the server process's own (`process`), or client and server together
  (`thread`). Unlike the rates, it hardly moves when other work shares the machine;
- `4 clients req/s`: four such clients on four threads at once, their requests together;
- `extract records/s`: `kho.extract.api.iter_pages` reads every citizen in pages of 500, as a sync does.
Each is taken against a server in its own process (`process`: `kho simulate serve`'s case) and in a thread of the
measuring process (`thread`: `serve_in_thread`, tests and `kho demo`, where client and server share one
interpreter). With `--against REF` (a git commit or another checkout, e.g. the commit before the server moved to
Starlette + uvicorn), REF's server is measured too and the ratios printed: in `process` mode both servers run at
once and the client alternates between them round by round, so a busy machine slows both alike; in `thread` mode
each round runs each code in a fresh process, alternated. Writes bench/results/serve.json; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("process", "thread")
MEASURES = ("page_rps", "cpu_ms_per_page", "clients4_rps", "extract_records_per_s")
SERVER = """
import sys
sys.path.insert(0, {plugins!r})
from kho.simulator.generate import WorldSpec
from kho.simulator.server import serve_forever
from kho.simulator.world import World
serve_forever(World.build(WorldSpec(seed={seed}, citizens={citizens})), "127.0.0.1", 0,
              on_ready=lambda url: print(url, flush=True))
"""


def ref_checkout(ref: str, into: Path) -> Path:
    """The `plugins` folder of `ref`, exported from this repository's history into `into` (or `ref`'s own, if it
    is a directory: another checkout)."""
    if (Path(ref) / "plugins").is_dir():
        return Path(ref).resolve() / "plugins"
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", ref, "plugins"], check=True,
                             capture_output=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "plugins"


@contextmanager
def server_process(plugins: Path, args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    """`kho simulate serve`'s server, imported from `plugins`, in a process of its own: (its URL, its pid)."""
    code = SERVER.format(plugins=str(plugins), seed=args.seed, citizens=args.citizens)
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip(), server.pid
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: kho simulate serve's own way out
        server.wait(timeout=60)


def requests_per_second(url: str, seconds: float, clients: int) -> tuple[float, int]:
    """GETs of the first page of 500 citizens by `clients` keep-alive clients on their own threads: per second, and
    how many."""
    import httpx

    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [time.perf_counter() + 3600]

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(10):  # warm up the connection and both sides' caches
                http.get("/population/v1/citizens", params={"page_size": 500}).raise_for_status()
            start.wait()
            while time.perf_counter() < deadline[0]:
                response = http.get("/population/v1/citizens", params={"page_size": 500})
                if response.status_code != 200 or len(response.json()["data"]) != 500:
                    raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:200]}")
                counts[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - began), sum(counts)


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) used so far by process `pid` (Linux /proc), or by this process if None."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, server_pid: int | None, args: argparse.Namespace) -> dict[str, float]:
    """The four measures against the server at `url` (its CPU read from `server_pid`, or this process's)."""
    from kho.extract.api import ApiSource, iter_pages
    from kho.sources.population import CITIZENS

    cpu_before = cpu_seconds(server_pid)
    page_rps, pages = requests_per_second(url, args.seconds, 1)
    cpu_ms = 1000 * (cpu_seconds(server_pid) - cpu_before) / pages
    clients4_rps, _ = requests_per_second(url, args.seconds, 4)
    began = time.perf_counter()
    records = sum(block.table.num_rows for block in iter_pages(ApiSource(url, page_size=500), CITIZENS))
    return {"page_rps": page_rps, "cpu_ms_per_page": cpu_ms, "clients4_rps": clients4_rps,
            "extract_records_per_s": records / (time.perf_counter() - began)}


def worker(args: argparse.Namespace) -> int:
    """One measurement of one server code (`--plugins`) in one mode; prints its JSON on the last line."""
    sys.path.insert(0, str(args.plugins))
    if args.mode == "process":
        with server_process(args.plugins, args) as (url, pid):
            result = measure(url, pid, args)
    else:
        from kho.simulator.generate import WorldSpec
        from kho.simulator.server import serve_in_thread
        from kho.simulator.world import World

        with serve_in_thread(World.build(WorldSpec(seed=args.seed, citizens=args.citizens))) as running:
            result = measure(running.url, None, args)
    print(json.dumps(result))
    return 0


def in_worker(plugins: Path, mode: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", "--plugins", str(plugins), "--mode", mode,
               "--citizens", str(args.citizens), "--seed", str(args.seed), "--seconds", str(args.seconds)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def report(code: str, mode: str, round_: int, result: dict[str, float]) -> None:
    print(f"round {round_ + 1} {mode:7s} {code:14s} " + "  ".join(f"{k} {result[k]:,.2f}" for k in MEASURES),
          flush=True)


def run_rounds(codes: dict[str, Path], args: argparse.Namespace) -> dict[tuple[str, str], list[dict[str, float]]]:
    samples: dict[tuple[str, str], list[dict[str, float]]] = {(c, m): [] for c in codes for m in MODES}
    with ExitStack() as stack:
        # process mode: every code's server up at once, measured in turn by this process's client.
        servers = {code: stack.enter_context(server_process(plugins, args)) for code, plugins in codes.items()}
        for round_ in range(args.repeat):
            order = list(codes) if round_ % 2 == 0 else list(reversed(codes))
            for code in order:
                samples[code, "process"].append(result := measure(*servers[code], args))
                report(code, "process", round_, result)
            for code in order:
                samples[code, "thread"].append(result := in_worker(codes[code], "thread", args))
                report(code, "thread", round_, result)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20250701)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each requests/s measurement")
    parser.add_argument("--repeat", type=int, default=5, help="rounds, alternating the codes; medians reported")
    parser.add_argument("--against", metavar="REF",
                        help="also measure this git commit's (or checkout directory's) server, alternated")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plugins", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    sys.path.insert(0, str(HERE.parent / "plugins"))  # the client (kho.extract) is always this checkout's
    with tempfile.TemporaryDirectory(prefix="kho-bench-serve-") as tmp:
        codes = {"this": HERE.parent / "plugins"}
        if args.against:
            codes[args.against] = ref_checkout(args.against, Path(tmp) / "ref")
        samples = run_rounds(codes, args)

    medians = {f"{code}/{mode}": {k: statistics.median(s[k] for s in runs) for k in MEASURES}
               for (code, mode), runs in samples.items()}
    print(f"\nmedians of {args.repeat} ({args.citizens:,} citizens, pages of 500; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):")
    print(f"{'server':24s} {'page req/s':>11s} {'CPU ms/page':>12s} {'4 clients req/s':>16s} "
          f"{'extract records/s':>18s}")
    for name, m in medians.items():
        print(f"{name:24s} {m['page_rps']:11,.0f} {m['cpu_ms_per_page']:12.2f} {m['clients4_rps']:16,.0f} "
              f"{m['extract_records_per_s']:18,.0f}")
    ratios: dict[str, dict[str, float]] = {}
    if args.against:
        for mode in MODES:
            this, ref = medians[f"this/{mode}"], medians[f"{args.against}/{mode}"]
            ratios[mode] = {k: this[k] / ref[k] for k in MEASURES}
            print(f"this / {args.against} ({mode}): " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios[mode].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "citizens": args.citizens, "seconds": args.seconds, "repeat": args.repeat, "against": args.against,
        "load_average": os.getloadavg()[0], "cpus": os.cpu_count(), "medians": medians, "this_vs_ref": ratios,
        "python": platform.python_version(), "machine": platform.node(),
    }, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
