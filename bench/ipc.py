"""IPC benchmark: publish -> event between two real ``GreengrassCoreIPCClientV2`` processes
through the ggvision core (a third process), beside a raw Unix-socket round trip in the same run.

    python -m bench.ipc [--runs 3] [--messages 2000] [--throughput 5000]

* latency: one message in flight; publisher's call start -> subscriber's ``on_stream_event``;
  200-byte binary payload carrying its ``time.monotonic_ns()`` send time (one clock for all
  processes on Linux).
* throughput: ``publish_to_topic_async`` with a bounded number outstanding; first publish -> last
  event at the subscriber.
* core CPU: ``time.process_time()`` of the core process (its event loop is its only busy thread)
  over each phase, divided by the events it delivered; it covers the publish request, its
  response and the event. The clients' own CPU per message is recorded too.
* baseline: a 200-byte ping-pong between this process and an echo process over a Unix socket
  (round trip: two hops, like publisher -> core -> subscriber), and the echo's CPU per message.
* event loops (``--loops``): one core (and its two clients) per loop, each run measuring every
  loop's core in turn; the first loop's figures are the report's, the others' are rows of their
  own beside them (default: the core's own choice, uvloop when installed, then asyncio).
* ``--py-spy DIR``: py-spy records each core over the whole run (raw stacks, ``DIR/core-LOOP.raw``);
  a one-mode profile comes from a run of that mode alone (``--windows 256 --messages 50``, or
  ``--throughput 100`` for one in flight).

Results: a table on stdout, ``build/bench/ipc.json`` and ``build/bench/ipc.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import _report
from bench._clients import HEAD, LATENCY, PAYLOAD_SIZE, THROUGHPUT, WARM
from bench._report import Row, median, percentile, spread
from ggvision.core import eventloop

REPO = _report.REPO
TARGET_MEDIAN_MS = 0.4
TARGET_MSG_S = 4000.0
TARGET_CPU_US = 50.0


class Child:
    """A child process spoken to in JSON lines, every read bounded by a timeout."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=env or _env(),
            pass_fds=pass_fds,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._buf = b""

    def read(self, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError(f"{self.name}: no answer within {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait(5)})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def send(self, obj: dict[str, Any] | str) -> None:
        assert self.proc.stdin is not None
        line = obj if isinstance(obj, str) else json.dumps(obj)
        self.proc.stdin.write(line.encode() + b"\n")

    def ask(self, obj: dict[str, Any] | str, timeout: float = 60.0) -> dict[str, Any]:
        self.send(obj)
        return self.read(timeout)

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()  # children stop at EOF on stdin
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def _ipc_vars(socket_path: str, token: str) -> dict[str, str]:
    """The two variables ``GreengrassCoreIPCClientV2()`` reads (IPC_PROTOCOL.md section 1)."""
    return {"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": socket_path, "SVCUID": token}


# --- the core path --------------------------------------------------------------------------------


def core_run(
    core: Child, pub: Child, sub: Child, messages: int, throughput: int, windows: list[int]
) -> dict[str, Any]:
    """One latency phase, then one throughput phase per window (outstanding publishes)."""
    s0 = core.ask("stats")
    lat = pub.ask({"op": "latency", "n": messages, "phase": LATENCY}, timeout=120)
    s1 = core.ask("stats")
    events = sub.ask({"op": "dump"})
    if len(events["latencies_ns"]) != messages:
        raise RuntimeError(f"lost events: {len(events['latencies_ns'])} of {messages}")
    lat_ms = [ns / 1e6 for ns in events["latencies_ns"]]
    req_ms = [ns / 1e6 for ns in lat["req_resp_ns"]]
    result: dict[str, Any] = {
        "latency_median_ms": median(lat_ms),
        "latency_p99_ms": percentile(lat_ms, 99),
        "latency_max_ms": max(lat_ms),
        "publish_req_resp_median_ms": median(req_ms),
        "cpu_us_per_msg_latency_phase": _cpu_per_msg(s0, s1),
        "sys_share_latency_phase": _sys_share(s0, s1),
        # The real clients' own CPU per message (publisher / subscriber process).
        "publisher_cpu_us_per_msg_latency_phase": lat["cpu_s"] / messages * 1e6,
        "subscriber_cpu_us_per_msg_latency_phase": events["cpu_s"] / messages * 1e6,
    }
    for w in windows:
        before = core.ask("stats")
        tput = pub.ask({"op": "throughput", "n": throughput, "window": w}, timeout=120)
        after = core.ask("stats")
        got = sub.ask({"op": "dump"})
        if tput["errors"] or got["count"] != throughput:
            raise RuntimeError(f"lost or failed messages: {tput['errors'][:3]}, {got['count']}")
        result[f"w{w}"] = {
            "throughput_msg_s": throughput / ((got["last_ns"] - tput["start_ns"]) / 1e9),
            "cpu_us_per_msg": _cpu_per_msg(before, after),
            "sys_share": _sys_share(before, after),
            "publisher_cpu_us_per_msg": tput["cpu_s"] / throughput * 1e6,
            "subscriber_cpu_us_per_msg": got["cpu_s"] / throughput * 1e6,
        }
    return result


def _cpu_per_msg(before: dict[str, Any], after: dict[str, Any]) -> float:
    delivered = int(after["delivered"]) - int(before["delivered"])
    return (float(after["cpu_s"]) - float(before["cpu_s"])) / delivered * 1e6


def _sys_share(before: dict[str, Any], after: dict[str, Any]) -> float:
    """Kernel share of the core's CPU (os.times has 10 ms ticks: a rough split)."""
    user, system = after["user_s"] - before["user_s"], after["sys_s"] - before["sys_s"]
    return system / (user + system) if user + system > 0 else 0.0


# --- the baseline -------------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("echo closed the connection")
        buf += chunk
    return bytes(buf)


def raw_run(
    echo: Child,
    path: str,
    warmup: int,
    messages: int,
    throughput: int,
    window: int,
) -> dict[str, Any]:
    """Ping-pong latency and pipelined throughput through the echo process, with its CPU."""
    filler = os.urandom(PAYLOAD_SIZE - HEAD.size)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        for seq in range(warmup):
            s.sendall(HEAD.pack(WARM, seq, warmup, 0) + filler)
            _recv_exact(s, PAYLOAD_SIZE)
    warm = echo.read()
    rtts: list[float] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        for seq in range(messages):
            t0 = time.monotonic_ns()
            s.sendall(HEAD.pack(LATENCY, seq, messages, t0) + filler)
            _recv_exact(s, PAYLOAD_SIZE)
            rtts.append((time.monotonic_ns() - t0) / 1e6)
    lat = echo.read()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        slots = threading.BoundedSemaphore(window)
        msg = HEAD.pack(THROUGHPUT, 0, throughput, 0) + filler

        def send_all() -> None:
            for _ in range(throughput):
                slots.acquire()
                s.sendall(msg)

        start = time.monotonic_ns()
        sender = threading.Thread(target=send_all)
        sender.start()
        for _ in range(throughput):
            _recv_exact(s, PAYLOAD_SIZE)
            slots.release()
        elapsed = (time.monotonic_ns() - start) / 1e9
        sender.join()
    tput = echo.read()
    return {
        "rtt_median_ms": median(rtts),
        "rtt_p99_ms": percentile(rtts, 99),
        "throughput_msg_s": throughput / elapsed,
        "echo_cpu_us_per_msg_latency_phase": (lat["cpu_s"] - warm["cpu_s"]) / messages * 1e6,
        "echo_cpu_us_per_msg_throughput_phase": (tput["cpu_s"] - lat["cpu_s"]) / throughput * 1e6,
    }


# --- the floor under the core -----------------------------------------------------------------


def relay_run(relay: Child, path: str, warmup: int, messages: int) -> dict[str, Any]:
    """One in flight through ``bench._core``'s relay: this process's publisher socket sends 200
    bytes and reads the 16-byte response, its subscriber thread reads the 200 bytes and acks
    over a pipe (the publisher waits for both, as the real publisher does)."""
    ack_r, ack_w = os.pipe()
    sub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    pub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    total = warmup + messages

    def subscriber() -> None:
        for _ in range(total):
            _recv_exact(sub, PAYLOAD_SIZE)
            os.write(ack_w, b"L")

    try:
        sub.connect(path)
        relay.ask("stats")  # the relay has the subscriber's connection before the publisher's
        pub.connect(path)
        thread = threading.Thread(target=subscriber)
        thread.start()
        msg = os.urandom(PAYLOAD_SIZE)
        before: dict[str, Any] = {}
        for i in range(total):
            if i == warmup:
                before = relay.ask("stats")
            pub.sendall(msg)
            _recv_exact(pub, 16)
            if os.read(ack_r, 1) != b"L":
                raise RuntimeError("relay: bad ack")
        after = relay.ask("stats")
        thread.join()
    finally:
        sub.close()
        pub.close()
        os.close(ack_r)
        os.close(ack_w)
    return {"cpu_us_per_msg_latency_phase": _cpu_per_msg(before, after)}


# --- main -------------------------------------------------------------------------------------


class CoreSet:
    """One core process (on one event loop) and its two real clients."""

    def __init__(
        self, root: Path, loop: str, children: list[Child], py_spy: Path | None = None
    ) -> None:
        root.mkdir()
        self.core = Child(f"core ({loop})", ["bench._core", str(root), loop])
        children.append(self.core)
        info = self.core.read(30)
        self.spy: subprocess.Popen[bytes] | None = None
        if py_spy is not None:
            py_spy.mkdir(parents=True, exist_ok=True)
            out = py_spy / f"core-{loop}.raw"
            cmd = ["py-spy", "record", "-f", "raw", "-r", "250", "--nonblocking", "-o", str(out)]
            self.spy = subprocess.Popen([*cmd, "--pid", str(self.core.proc.pid)])
        sock, tokens = info["socket"], info["tokens"]
        ack_r, ack_w = os.pipe()
        try:
            self.sub = Child(
                f"subscriber ({loop})",
                ["bench._clients", "subscriber", str(ack_w)],
                _env(_ipc_vars(sock, tokens["com.bench.Subscriber"])),
                (ack_w,),
            )
            children.append(self.sub)
            self.pub = Child(
                f"publisher ({loop})",
                ["bench._clients", "publisher", str(ack_r)],
                _env(_ipc_vars(sock, tokens["com.bench.Publisher"])),
                (ack_r,),
            )
            children.append(self.pub)
        finally:
            os.close(ack_r)
            os.close(ack_w)
        self.sub.read(30)
        self.pub.read(30)

    def warm_up(self, n: int, window: int) -> None:
        self.pub.ask({"op": "latency", "n": n, "phase": WARM}, timeout=60)
        self.sub.ask({"op": "dump"})
        self.pub.ask({"op": "throughput", "n": n, "window": window}, timeout=60)
        self.sub.ask({"op": "dump"})


def publish_event_median_ms(messages: int = 500, warmup: int = 100) -> float:
    """The real clients' publish->event median (ms, one message in flight) through the core (on
    its default event loop): this benchmark's latency phase alone, for another benchmark's floor
    measured in its own run."""
    root = Path(tempfile.mkdtemp(prefix="ggv-bench-", dir="/tmp"))
    children: list[Child] = []
    try:
        cores = CoreSet(root / "core", eventloop.loop_name(), children)
        cores.pub.ask({"op": "latency", "n": warmup, "phase": WARM}, timeout=60)
        cores.sub.ask({"op": "dump"})
        cores.pub.ask({"op": "latency", "n": messages, "phase": LATENCY}, timeout=120)
        events = cores.sub.ask({"op": "dump"})
    finally:
        for child in reversed(children):
            child.stop()
        shutil.rmtree(root, ignore_errors=True)
    if len(events["latencies_ns"]) != messages:
        raise RuntimeError(f"lost events: {len(events['latencies_ns'])} of {messages}")
    return median([ns / 1e6 for ns in events["latencies_ns"]])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Each run measures every loop's core in turn, then the raw baseline (side by side)."""
    root = Path(tempfile.mkdtemp(prefix="ggv-bench-", dir="/tmp"))
    children: list[Child] = []
    try:
        sets = {loop: CoreSet(root / loop, loop, children, args.py_spy) for loop in args.loops}
        echo_path = str(root / "echo.socket")
        echo = Child("echo", ["bench._clients", "echo", echo_path])
        children.append(echo)
        echo.read(30)
        for s in sets.values():
            s.warm_up(args.warmup, args.windows[0])
        relays: dict[str, tuple[Child, str]] = {}
        for loop in args.loops:
            relay = Child(f"relay ({loop})", ["bench._core", str(root / loop), loop, "relay"])
            children.append(relay)
            relays[loop] = (relay, relay.read(30)["socket"])
        by_loop: dict[str, list[dict[str, Any]]] = {loop: [] for loop in args.loops}
        relay_runs: dict[str, list[dict[str, Any]]] = {loop: [] for loop in args.loops}
        raw_runs = []
        for i in range(args.runs):
            for loop, s in sets.items():
                by_loop[loop].append(
                    core_run(s.core, s.pub, s.sub, args.messages, args.throughput, args.windows)
                )
                relay, relay_path = relays[loop]
                relay_runs[loop].append(relay_run(relay, relay_path, args.warmup, args.messages))
            raw_runs.append(
                raw_run(
                    echo, echo_path, args.warmup, args.messages, args.throughput, args.windows[-1]
                )
            )
            for loop, runs in by_loop.items():
                tputs = ", ".join(
                    f"{runs[-1][f'w{w}']['throughput_msg_s']:,.0f} msg/s (<= {w})"
                    for w in args.windows
                )
                print(
                    f"run {i + 1}/{args.runs} ({loop}): core median "
                    f"{runs[-1]['latency_median_ms']:.3f} ms, {tputs}; raw rtt "
                    f"{raw_runs[-1]['rtt_median_ms']:.3f} ms",
                    flush=True,
                )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stop:
            stop.connect(echo_path)  # an empty connection stops the echo
        for s in sets.values():
            if s.spy is not None:
                s.spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                s.spy.wait(30)
        return {
            "core_runs": by_loop[args.loops[0]],
            "raw_runs": raw_runs,
            "by_loop": by_loop,
            "relay_runs": relay_runs,
        }
    finally:
        for child in reversed(children):
            child.stop()
        shutil.rmtree(root, ignore_errors=True)


def rows_for(results: dict[str, Any], windows: list[int]) -> list[Row]:
    core, raw = results["core_runs"], results["raw_runs"]

    def m(runs: list[dict[str, Any]], key: str, window: int | None = None) -> float:
        return median([(r[f"w{window}"] if window else r)[key] for r in runs])

    def sp(runs: list[dict[str, Any]], key: str, window: int | None = None) -> str:
        return spread([(r[f"w{window}"] if window else r)[key] for r in runs])

    rtt = m(raw, "rtt_median_ms")
    lat = m(core, "latency_median_ms")
    cpu_l = m(core, "cpu_us_per_msg_latency_phase")
    rows = [
        Row(
            "publish->event latency median",
            "ms",
            lat,
            rtt,
            "raw RTT",
            f"<= {TARGET_MEDIAN_MS}",
            lat <= TARGET_MEDIAN_MS,
            sp(core, "latency_median_ms"),
        ),
        Row(
            "publish->event latency p99",
            "ms",
            m(core, "latency_p99_ms"),
            m(raw, "rtt_p99_ms"),
            "raw RTT p99",
            spread=sp(core, "latency_p99_ms"),
        ),
        Row(
            "publish request/response median",
            "ms",
            m(core, "publish_req_resp_median_ms"),
            rtt,
            "raw RTT",
            spread=sp(core, "publish_req_resp_median_ms"),
        ),
    ]
    raw_tput = m(raw, "throughput_msg_s")
    echo_cpu_t = m(raw, "echo_cpu_us_per_msg_throughput_phase")
    for w in windows:
        tput = m(core, "throughput_msg_s", w)
        cpu_t = m(core, "cpu_us_per_msg", w)
        rows += [
            Row(
                f"throughput, <= {w} outstanding",
                "msg/s",
                tput,
                raw_tput,
                "raw echo",
                f">= {TARGET_MSG_S:,.0f}",
                tput >= TARGET_MSG_S,
                sp(core, "throughput_msg_s", w),
            ),
            Row(
                f"core CPU per delivered msg, <= {w} outstanding",
                "us",
                cpu_t,
                echo_cpu_t,
                "echo CPU/msg",
                f"<= {TARGET_CPU_US:.0f}",
                cpu_t <= TARGET_CPU_US,
                sp(core, "cpu_us_per_msg", w),
            ),
        ]
    rows.append(
        Row(
            "core CPU per delivered msg, one in flight",
            "us",
            cpu_l,
            m(raw, "echo_cpu_us_per_msg_latency_phase"),
            "echo CPU/msg",
            f"<= {TARGET_CPU_US:.0f}",
            cpu_l <= TARGET_CPU_US,
            sp(core, "cpu_us_per_msg_latency_phase"),
        )
    )
    rows += _floor_rows(results)
    rows += _loop_rows(results, windows)
    for w in windows:
        for who in ("publisher", "subscriber"):
            key = f"{who}_cpu_us_per_msg"
            rows.append(
                Row(
                    f"{who} (real client) CPU per msg, <= {w} outstanding",
                    "us",
                    m(core, key, w),
                    None,
                    "",
                    spread=sp(core, key, w),
                )
            )
    return rows


def _floor_rows(results: dict[str, Any]) -> list[Row]:
    """Per loop: the relay's CPU per message with one in flight, against the core's on it."""
    rows = []
    for loop, runs in results.get("relay_runs", {}).items():
        key = "cpu_us_per_msg_latency_phase"
        values = [r[key] for r in runs]
        core = median([r[key] for r in results["by_loop"][loop]])
        rows.append(
            Row(
                f"floor (lower bound): relay CPU per msg, one in flight ({loop} loop)",
                "us",
                median(values),
                core,
                "core on it",
                spread=spread(values),
            )
        )
    return rows


def _loop_rows(results: dict[str, Any], windows: list[int]) -> list[Row]:
    """The core on each other event loop, against the core on the first (same runs)."""
    by_loop: dict[str, list[dict[str, Any]]] = results.get("by_loop", {})
    if len(by_loop) < 2:
        return []
    first, *others = by_loop
    main_runs = by_loop[first]
    keys = [("publish->event latency median", "ms", "latency_median_ms", None)]
    keys.append(
        ("core CPU per delivered msg, one in flight", "us", "cpu_us_per_msg_latency_phase", None)
    )
    keys += [
        (f"core CPU per delivered msg, <= {w} outstanding", "us", "cpu_us_per_msg", w)
        for w in windows
    ]
    rows = []
    for loop in others:
        runs = by_loop[loop]
        for metric, unit, key, w in keys:
            values = [(r[f"w{w}"] if w else r)[key] for r in runs]
            base = median([(r[f"w{w}"] if w else r)[key] for r in main_runs])
            rows.append(
                Row(
                    f"{metric} ({loop} loop)",
                    unit,
                    median(values),
                    base,
                    first,
                    spread=spread(values),
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = _report.parser("python -m bench.ipc", __doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000, help="latency samples per run")
    parser.add_argument("--throughput", type=int, default=5000, help="messages per run")
    parser.add_argument(
        "--windows",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[32, 256],
        help="outstanding async publishes, one throughput phase each (default 32,256)",
    )
    parser.add_argument(
        "--loops",
        type=lambda v: v.split(","),
        default=None,
        help="event loops to run the core on, each its own core (default: the core's own "
        "choice, then asyncio if that is uvloop); the first one's figures are the report's",
    )
    parser.add_argument("--py-spy", type=Path, default=None, help="py-spy each core into DIR")
    args = parser.parse_args(argv)
    if args.loops is None:
        args.loops = list(dict.fromkeys([eventloop.loop_name(), eventloop.ASYNCIO]))

    preamble = _report.Run()
    load_before = preamble.load_before
    results = run(args)
    rows = rows_for(results, args.windows)
    results["setup"] = {
        "runs": args.runs,
        "warmup": args.warmup,
        "latency_messages": args.messages,
        "throughput_messages": args.throughput,
        "windows": args.windows,
        "loops": args.loops,
        "payload_bytes": PAYLOAD_SIZE,
        **preamble.machine(),
    }
    notes = [
        f"{args.runs} runs; per run {args.messages} latency samples (one in flight, after "
        f"{args.warmup} warm-up) and {args.throughput} messages per window of outstanding "
        f"async publishes ({', '.join(map(str, args.windows))}); {PAYLOAD_SIZE}-byte binary "
        "payloads. The raw baseline's throughput uses the largest window.",
        "Processes: core, publisher (real client), subscriber (real client, default executor), "
        f"one such set per event loop ({', '.join(args.loops)}; the first one's figures are the "
        "report's, each run measures every loop in turn); baseline echo process + this "
        "process. Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, 1-min load average "
        f"{load_before:.2f} before the run (other work on the machine shows up here).",
        "Latency: publisher call start -> subscriber on_stream_event (CLOCK_MONOTONIC). Raw RTT: "
        "200-byte ping-pong over a Unix socket (two hops, like publisher -> core -> subscriber).",
        "Core CPU: time.process_time() of the core process over the phase / events delivered "
        "(includes decoding the publish, its response and the event).",
        "Floor: a relay process on the same event loop that does only the core's system calls "
        "per message (read 200 bytes; write them to one sleeping peer and 16 bytes back to the "
        "other), one in flight, its CPU per message. Its peers (this process's threads) answer "
        "at once, the real clients take ~0.3 ms, so the CPUs sleep deeper between messages and "
        "every wake costs the core more: a lower bound.",
    ]
    print()
    _report.show([_report.text_table(rows)], notes)
    _report.wrote(
        _report.write(args.out, results, rows, notes), f" ({results['setup']['wall_s']} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
