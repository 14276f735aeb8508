"""Webhook throughput, CPU per review and latency against a floor and kopf, in one run.

``python -m bench.webhook_bench [--duration S] [--rate N] [--targets a,b] [--json PATH]``

What it does (127.0.0.1 only, every load step bounded by ``--duration``):

1. makes a throwaway PKI with ``certs-tooling init --local`` and writes the real StreamSpace
   ReplicaSet-pod AdmissionReview (``tests.payloads.streamspace_agent_review``) to a file;
2. starts each target as its own process, checks one answer over verified TLS (a stamping
   target must return a token that verifies against the JWKS), then:

   * **saturated**: ``wrk`` (one thread, keep-alive, ``--connections``) POSTs the review for
     ``--duration`` seconds: reviews/s, plus the server's CPU per review from the
     utime+stime delta of ``/proc/<pid>/stat`` (all of its processes) divided by the requests;
   * **fixed rate**: ``wrk`` with 10 keep-alive connections that each pause between requests
     (its Lua ``delay()``), together about ``--rate`` reviews/s, for ``--duration`` seconds:
     p50 and p99 latency from ``wrk --latency`` (closed loop, like ``hey -q``; wrk's own
     latency noise is lower than hey's on these machines);

3. repeats that ``--rounds`` times (default 3), targets interleaved, and prints the medians and
   their ratios; ``--json`` writes medians and every run.

With ``--profile DIR`` (needs ``py-spy`` and ptrace rights, e.g. root), py-spy samples the
``webhook`` target during a second saturated run and writes ``DIR/webhook.raw`` (collapsed
stacks) and ``DIR/webhook-profile.txt`` (the frames with the largest inclusive and self shares).
Sampling pauses the process, so that run's throughput is not reported.

Targets: ``webhook`` (``python -m webhook`` as in production: one process, metrics port on,
audit JSON lines written to stdout, here a file), ``webhook-2w`` (``workers: 2``),
``webhook-asyncio`` (``eventLoop: asyncio``), ``floor``, ``kopf`` (asyncio loop, as ``pip install
kopf`` runs), ``kopf-uvloop`` (as ``kopf run`` runs with uvloop installed) and ``kopf-fast``
(:mod:`bench.webhook_peers`; the kopf ones are skipped with a message when kopf is not
importable). Single-process targets are pinned to CPU 0
and the load generators to CPU 1 (``taskset``) when the machine has two or more, so one server
core is measured; ``webhook-2w`` gets every CPU, shared with the load generator.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from demo.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
ALL_TARGETS = (
    "webhook",
    "webhook-2w",
    "webhook-asyncio",
    "floor",
    "kopf",
    "kopf-uvloop",
    "kopf-fast",
)
DEFAULT_TARGETS = ALL_TARGETS
STAMPING = set(ALL_TARGETS) - {"floor"}
ANNOTATION = "agents.streamspace.io/bootstrap-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")

LUA = """
local f = io.open(os.getenv("REVIEW_FILE"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local pause = tonumber(os.getenv("PAUSE_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end
"""
#: Connections of the fixed-rate run; each pauses so that together they send ``--rate``/s.
RATE_CONNECTIONS = 10


@dataclass
class Result:
    target: str
    saturated_rps: float
    saturated_errors: int
    cpu_us_per_review: float
    fixed_rate_rps: float
    p50_ms: float
    p99_ms: float
    fixed_rate_errors: int


def _descendants(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                pids.extend(_descendants(int(child)))
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds (proc(5), fields 14 and 15)."""
    total = 0
    for p in _descendants(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def pin(cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


class Workspace:
    """PKI, review body, wrk script and configs in one temporary folder."""

    def __init__(self, root: Path) -> None:
        from certs_tooling.cli import main as certs_main
        from tests.payloads import streamspace_agent_review

        self.root = root
        self.pki = root / "pki"
        if certs_main(["init", "--out", str(self.pki), "--local", "--force"]) != 0:
            raise SystemExit("certs-tooling init failed")
        self.review = root / "review.json"
        self.review.write_text(json.dumps(streamspace_agent_review(uid="bench-uid")))
        self.lua = root / "post.lua"
        self.lua.write_text(LUA)
        self.ca = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))

    def webhook_config(self, port: int, **extra: Any) -> Path:
        import yaml

        document = {
            "trust": {"namespaces": ["streamspace"]},
            "cluster": "bench",
            "signingKeyFile": str(self.pki / "signing.key"),
            "tlsCertFile": str(self.pki / "webhook-tls.crt"),
            "tlsKeyFile": str(self.pki / "webhook-tls.key"),
            "host": "127.0.0.1",
            "port": port,
            "metricsHost": "127.0.0.1",
            "metricsPort": free_port(),
            "shutdownDelaySeconds": 0,
            **extra,
        }
        path = self.root / f"webhook-{port}.yaml"
        path.write_text(yaml.safe_dump(document))
        return path


def command(target: str, ws: Workspace, port: int, server_cpu: int | None) -> list[str]:
    py = [sys.executable]
    if target.startswith("webhook"):
        extra: dict[str, Any] = {}
        if target == "webhook-2w":
            extra["workers"] = 2
        if target == "webhook-asyncio":
            extra["eventLoop"] = "asyncio"
        config = ws.webhook_config(port, **extra)
        prefix = [] if target == "webhook-2w" else pin(server_cpu)
        return [*prefix, *py, "-m", "webhook", "--config", str(config)]
    kind, loop = {
        "floor": ("floor", "uvloop"),
        "kopf": ("kopf", "asyncio"),
        "kopf-uvloop": ("kopf", "uvloop"),
        "kopf-fast": ("kopf-fast", "uvloop"),
    }[target]
    return [
        *pin(server_cpu),
        *py,
        "-m",
        "bench.webhook_peers",
        kind,
        "--loop",
        loop if importlib.util.find_spec("uvloop") else "asyncio",
        "--port",
        str(port),
        "--cert",
        str(ws.pki / "webhook-tls.crt"),
        "--key",
        str(ws.pki / "webhook-tls.key"),
        "--signing-key",
        str(ws.pki / "signing.key"),
    ]


def post_once(ws: Workspace, port: int) -> dict[str, Any]:
    request = urllib.request.Request(
        f"https://localhost:{port}/mutate",
        data=ws.review.read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    # S310: the URL is the https loopback literal above.
    with urllib.request.urlopen(request, context=ws.ca, timeout=5) as resp:  # noqa: S310
        answer: dict[str, Any] = json.load(resp)
        return answer


def wait_ready(ws: Workspace, port: int, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            return post_once(ws, port)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not answer within 30 s")


def check_answer(target: str, ws: Workspace, answer: dict[str, Any]) -> None:
    import jsonpatch

    from bootstrap_token import KeySet, VerificationPolicy, verify

    response = answer["response"]
    if response["uid"] != "bench-uid" or response["allowed"] is not True:
        raise RuntimeError(f"{target}: unexpected answer {response}")
    if target not in STAMPING:
        return
    import base64

    review = json.loads(ws.review.read_text())
    pod = jsonpatch.apply_patch(
        review["request"]["object"], json.loads(base64.b64decode(response["patch"]))
    )
    verify(
        pod["metadata"]["annotations"][ANNOTATION],
        KeySet.from_file(ws.pki / "jwks.json"),
        VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver"),
        now=int(time.time()),
    )


def run_wrk(
    ws: Workspace,
    port: int,
    seconds: float,
    connections: int,
    cpu: int | None,
    *,
    pause_ms: int = 0,
) -> str:
    out = subprocess.run(
        [
            *pin(cpu),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(ws.lua),
            f"https://127.0.0.1:{port}/mutate",
        ],
        env={**os.environ, "REVIEW_FILE": str(ws.review), "PAUSE_MS": str(pause_ms)},
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    return out.stdout


def parse_wrk(text: str) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx + socket errors) from wrk's summary."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return rps, total, errors


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_latency(text: str) -> tuple[float, float]:
    """(p50 ms, p99 ms) from wrk's ``--latency`` distribution."""
    pattern = r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$"
    found = {q: _ms(v, u) for q, v, u in re.findall(pattern, text, re.M)}
    return found["50"], found["99"]


def summarise_profile(raw: Path, top: int = 40) -> str:
    """Inclusive and self shares of the frames in py-spy's collapsed stacks (``-f raw``)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    lines = [f"samples: {total}", "", "inclusive:"]
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / total:6.1f}%  {frame}")
    lines += ["", "self:"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / total:6.1f}%  {frame}")
    return "\n".join(lines) + "\n"


def profile(ws: Workspace, port: int, pid: int, args: argparse.Namespace, cpu: int | None) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("webhook_bench: py-spy not found; --profile skipped", file=sys.stderr)
        return
    args.profile.mkdir(parents=True, exist_ok=True)
    raw = args.profile / "webhook.raw"
    seconds = max(2, round(args.duration) - 2)
    load = subprocess.Popen(
        [*pin(cpu), "wrk", "-t1", f"-c{args.connections}", f"-d{seconds + 2}s", "-s",
         str(ws.lua), f"https://127.0.0.1:{port}/mutate"],
        env={**os.environ, "REVIEW_FILE": str(ws.review)},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1)
        subprocess.run(
            [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "250", "--native",
             "-f", "raw", "-o", str(raw)],
            capture_output=True, timeout=seconds + 60, check=True,
        )  # fmt: skip
    finally:
        load.wait(timeout=seconds + 30)
    summary = summarise_profile(raw)
    (args.profile / "webhook-profile.txt").write_text(summary)
    print(f"webhook_bench: profile in {args.profile}", file=sys.stderr)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(
    target: str,
    ws: Workspace,
    args: argparse.Namespace,
    server_cpu: int | None,
    load_cpu: int | None,
) -> Result:
    port = free_port()
    log = (ws.root / f"{target}.out").open("wb")
    proc = subprocess.Popen(
        command(target, ws, port, server_cpu),
        cwd=ROOT,
        stdout=log,  # the webhook's audit JSON lines go here, through its logging handler
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        check_answer(target, ws, wait_ready(ws, port, proc))
        run_wrk(ws, port, args.warmup, args.connections, load_cpu)
        before = cpu_seconds(proc.pid)
        text = run_wrk(ws, port, args.duration, args.connections, load_cpu)
        cpu = cpu_seconds(proc.pid) - before
        rps, total, errors = parse_wrk(text)
        if args.verbose:
            print(text)
        # Fixed rate: RATE_CONNECTIONS connections, each pausing between requests (wrk's
        # delay()), so that together they send about --rate reviews/s.
        pause = max(1, round(RATE_CONNECTIONS * 1000 / args.rate) - 1)
        fixed = run_wrk(ws, port, args.duration, RATE_CONNECTIONS, load_cpu, pause_ms=pause)
        if args.verbose:
            print(fixed)
        fixed_rps, _, bad = parse_wrk(fixed)
        p50, p99 = parse_latency(fixed)
        if args.profile is not None and target == "webhook":
            profile(ws, port, proc.pid, args, load_cpu)
    finally:
        stop(proc)
        log.close()
    return Result(
        target=target,
        saturated_rps=rps,
        saturated_errors=errors,
        cpu_us_per_review=cpu / total * 1e6 if total else float("nan"),
        fixed_rate_rps=fixed_rps,
        p50_ms=p50,
        p99_ms=p99,
        fixed_rate_errors=bad,
    )


def median(results: list[Result]) -> Result:
    """The per-field median of several runs of one target (errors are summed)."""

    def mid(values: list[float]) -> float:
        return statistics.median(values)

    return Result(
        target=results[0].target,
        saturated_rps=mid([r.saturated_rps for r in results]),
        saturated_errors=sum(r.saturated_errors for r in results),
        cpu_us_per_review=mid([r.cpu_us_per_review for r in results]),
        fixed_rate_rps=mid([r.fixed_rate_rps for r in results]),
        p50_ms=mid([r.p50_ms for r in results]),
        p99_ms=mid([r.p99_ms for r in results]),
        fixed_rate_errors=sum(r.fixed_rate_errors for r in results),
    )


def table(results: list[Result], rate: int) -> str:
    lines = [
        f"| target | saturated reviews/s | CPU µs/review | p50 ms @{rate}/s | p99 ms @{rate}/s "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.target} | {r.saturated_rps:,.0f} | {r.cpu_us_per_review:.0f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.saturated_errors + r.fixed_rate_errors} |"
        )
    by = {r.target: r for r in results}
    ratios = []
    for a, b in (
        ("webhook", "floor"),
        ("webhook", "kopf"),
        ("webhook", "kopf-uvloop"),
        ("webhook", "kopf-fast"),
        ("webhook-2w", "webhook"),
        ("webhook", "webhook-asyncio"),
    ):
        if a in by and b in by and by[b].saturated_rps:
            ratios.append(
                f"- {a} / {b}: {by[a].saturated_rps / by[b].saturated_rps:.2f}x throughput, "
                f"{by[a].cpu_us_per_review / by[b].cpu_us_per_review:.2f}x CPU per review"
            )
    return "\n".join([*lines, "", *ratios])


def stack() -> str:
    """Which optional fast paths the webhook uses in this environment."""
    found = {name: importlib.util.find_spec(name) is not None for name in ("orjson", "uvloop")}
    nacl = importlib.util.find_spec("nacl") is not None
    return (
        f"json={'orjson' if found['orjson'] else 'json'}, "
        f"loop={'uvloop' if found['uvloop'] else 'asyncio'}, "
        f"ed25519={'pynacl' if nacl else 'cryptography'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load step")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up")
    parser.add_argument("--rate", type=int, default=500, help="fixed-rate reviews/s")
    parser.add_argument("--connections", type=int, default=16, help="wrk keep-alive connections")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help=", ".join(ALL_TARGETS))
    parser.add_argument("--rounds", type=int, default=3, help="runs per target; medians shown")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the webhook into DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="print wrk output")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("wrk",) if shutil.which(tool) is None]
    if missing:
        print(
            f"webhook_bench: {', '.join(missing)} not found; install with "
            "`apt-get install -y wrk` (Debian) and run again",
            file=sys.stderr,
        )
        return 2
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if importlib.util.find_spec("kopf") is None:
        skipped = [t for t in targets if t.startswith("kopf")]
        if skipped:
            print(
                f"webhook_bench: kopf is not importable; skipping {', '.join(skipped)} "
                "(`pip install kopf` to compare)",
                file=sys.stderr,
            )
        targets = [t for t in targets if not t.startswith("kopf")]
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    runs: dict[str, list[Result]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
        ws = Workspace(Path(tmp))
        for round_ in range(args.rounds):
            for target in targets:  # interleaved, so that host noise spreads over all targets
                print(f"-- round {round_ + 1}: {target}", file=sys.stderr, flush=True)
                result = measure(target, ws, args, server_cpu, load_cpu)
                print(f"   {asdict(result)}", file=sys.stderr, flush=True)
                runs[target].append(result)
                if target == "webhook":
                    args.profile = None  # one profile is enough
    results = [median(runs[t]) for t in targets]
    print(
        f"\nwebhook bench: {os.cpu_count()} CPUs, {args.rounds} rounds (medians), duration "
        f"{args.duration:g}s, {args.connections} connections, fixed rate {args.rate}/s; "
        f"{stack()}\n"
    )
    print(table(results, args.rate))
    if args.json:
        document = {
            "medians": [asdict(r) for r in results],
            "runs": {t: [asdict(r) for r in rs] for t, rs in runs.items()},
            "stack": stack(),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
