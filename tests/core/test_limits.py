"""What a hostile local client can make the core hold (issue #21, defects 1 and 2).

* Before authentication: the first message is capped at a CONNECT's size (refused from its
  prelude alone), and a connection that has not authenticated within the handshake timeout is
  dropped.
* One token may hold only so many connections; one more gets a refused CONNECT_ACK (the real
  client raises ``AccessDeniedError``).
* Subscribers that stop reading (real clients stopped with SIGSTOP) are aborted once the bytes
  queued for them break the per-component or the overall budget; the books are checked against
  what the transports hold, and the core's RSS (a core in its own process) stays within the
  budget plus a margin while a publisher floods them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ggvision.core import codec, rpc
from ggvision.core.limits import MIB, Limits, OutboundBudget
from ggvision.core.rpc import CLOSE_GRACE_S
from ggvision.testing.agent import AgentError, AgentProcess
from ggvision.testing.harness import CoreThread, pubsub_policy
from tests.core.conftest import PROTOCOL_ERROR_ON_0, RawClient, kinds

PUBLISH = "aws.greengrass#PublishToTopic"
SUBSCRIBE = "aws.greengrass#SubscribeToTopic"
REPO = Path(__file__).resolve().parents[2]


def _prelude(total: int, headers_len: int = 0) -> bytes:
    head = struct.pack(">II", total, headers_len)
    return head + struct.pack(">I", zlib.crc32(head))


def _connect_frame(token: str, size: int | None = None) -> bytes:
    """The real client's CONNECT (``{"authToken": "<token>"}``), padded to ``size`` bytes with
    JSON whitespace when given."""
    headers = [
        codec.int32(":message-type", rpc.CONNECT),
        codec.int32(":message-flags", 0),
        codec.int32(":stream-id", 0),
        codec.string(":version", rpc.PROTOCOL_VERSION),
    ]
    payload = b'{"authToken": "%s"}' % token.encode()
    frame = codec.encode(headers, payload)
    if size is not None:
        frame = codec.encode(headers, payload + b" " * (size - len(frame)))
        assert len(frame) == size
    return frame


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- the books, on their own -----------------------------------------------------------------


@dataclass(eq=False)
class FakeConn:
    component: str | None
    size: int = 0
    queued: int = 0
    aborted: bool = False

    def queued_now(self) -> int:
        return 0 if self.aborted else self.size

    def cut_off(self) -> None:
        self.aborted = True


def _write(books: OutboundBudget, conn: FakeConn, size: int) -> None:
    conn.size = size
    books.update(conn, size)


def test_budget_cuts_the_components_largest_queue_over_its_component_budget() -> None:
    books = OutboundBudget(total=100, per_component=10)
    a1, a2, b = FakeConn("A"), FakeConn("A"), FakeConn("B")
    _write(books, a1, 6)
    _write(books, b, 9)
    _write(books, a2, 4)
    assert (books.of("A"), books.total, books.cut_offs) == (10, 19, 0)  # at the limit: fine
    _write(books, a2, 5)  # A: 11 > 10 -> its largest queue goes, B's larger one stays
    assert (a1.aborted, a2.aborted, b.aborted) == (True, False, False)
    assert (books.of("A"), books.of("B"), books.total, books.cut_offs) == (5, 9, 14, 1)


def test_budget_cuts_the_largest_queue_of_all_over_the_total_budget() -> None:
    books = OutboundBudget(total=20, per_component=15)
    a, b, c = FakeConn("A"), FakeConn("B"), FakeConn("C")
    _write(books, a, 12)
    _write(books, b, 3)
    _write(books, c, 6)  # 21 > 20: A holds the most, not C whose write broke the budget
    assert (a.aborted, b.aborted, c.aborted) == (True, False, False)
    assert (books.total, books.by_component()) == (9, {"B": 3, "C": 6})


def test_budget_rereads_the_queues_before_cutting_anyone() -> None:
    books = OutboundBudget(total=20, per_component=20)
    a, b = FakeConn("A"), FakeConn("B")
    _write(books, a, 15)
    a.size = 0  # A's queue drained without a write: its record is stale
    _write(books, b, 10)  # 25 on the books, 10 in truth: nobody is cut
    assert (a.aborted, b.aborted, books.total, books.cut_offs) == (False, False, 10, 0)
    books.update(b, 0)
    assert (books.total, books.by_component()) == (0, {})


def test_limits_are_validated() -> None:
    with pytest.raises(Exception) as info:
        Limits(connections_per_token=0)
    assert "connections_per_token" in str(info.value)
    with pytest.raises(Exception) as info:
        Limits(max_connect_bytes=100)
    assert "max_connect_bytes" in str(info.value)


# --- before authentication (raw sockets) -----------------------------------------------------

HANDSHAKE_S = 0.5
PER_TOKEN = 3


@dataclass
class Core:
    thread: CoreThread
    token: str
    other: str

    def connections(self) -> int:
        return self.thread.call(lambda: len(self.thread.ipc.connections))


@pytest.fixture(scope="module")
def core() -> Iterator[Core]:
    limits = Limits(handshake_timeout_s=HANDSHAKE_S, connections_per_token=PER_TOKEN)
    with CoreThread(limits=limits) as thread:
        acl = {"accessControl": pubsub_policy(["*"], ["*"])}
        one, two = thread.register("com.test.One", acl), thread.register("com.test.Two", acl)
        yield Core(thread, one, two)


@pytest.fixture
def raw(core: Core) -> Iterator[Callable[[], RawClient]]:
    clients: list[RawClient] = []

    def make() -> RawClient:
        c = RawClient(core.thread.socket_path)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
    assert _wait_for(lambda: core.connections() == 0), "the core kept a closed connection"


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda token: b"", id="silent"),
        pytest.param(lambda token: _prelude(8000), id="prelude-only"),
        pytest.param(lambda token: _connect_frame(token)[:-1], id="connect-but-its-last-byte"),
    ],
)
def test_connection_that_does_not_authenticate_is_dropped_after_the_handshake_timeout(
    raw: Callable[[], RawClient], core: Core, send: Callable[[str], bytes]
) -> None:
    c = raw()
    start = time.monotonic()
    c.send_bytes(send(core.token))
    assert c.until_closed(timeout=HANDSHAKE_S + 3) == []  # nothing but the hang-up
    elapsed = time.monotonic() - start
    assert HANDSHAKE_S * 0.8 <= elapsed < HANDSHAKE_S + 2
    assert _wait_for(lambda: core.connections() == 0)


def test_a_connect_dripped_slower_than_the_timeout_is_dropped_mid_way(
    raw: Callable[[], RawClient], core: Core
) -> None:
    c = raw()
    frame = _connect_frame(core.token)
    start = time.monotonic()
    sent = 0
    while sent < len(frame) and c.send_bytes(frame[sent : sent + 1]):
        sent += 1
        time.sleep(HANDSHAKE_S / 10)  # the whole CONNECT would take ~14 timeouts
        if time.monotonic() - start > HANDSHAKE_S + 2:
            break
    assert c.until_closed(timeout=3) == []
    assert sent < len(frame)
    assert time.monotonic() - start < HANDSHAKE_S + 2


def test_an_authenticated_connection_outlives_the_handshake_timeout(
    raw: Callable[[], RawClient], core: Core
) -> None:
    c = raw()
    c.handshake(core.token)
    time.sleep(HANDSHAKE_S * 2)
    c.send(rpc.PING, payload=b"still here")
    assert c.expect().payload == b"still here"


@pytest.mark.parametrize(
    "claimed",
    [
        pytest.param(Limits().max_connect_bytes + 1, id="one-byte-over"),
        pytest.param(codec.MAX_MESSAGE_LEN, id="24MiB"),
    ],
)
def test_a_first_frame_over_the_connect_cap_is_refused_from_its_prelude(claimed: int) -> None:
    # A core with the default handshake timeout (5 s): the refusal must come long before it.
    with CoreThread() as thread:
        c = RawClient(thread.socket_path)
        try:
            start = time.monotonic()
            c.send_bytes(_prelude(claimed))  # no body at all: nothing to wait for
            assert kinds(c.until_closed()) == [PROTOCOL_ERROR_ON_0]
            assert time.monotonic() - start < 2
        finally:
            c.close()


def test_a_connect_of_exactly_the_cap_is_served_and_the_cap_ends_with_it(
    raw: Callable[[], RawClient], core: Core
) -> None:
    cap = Limits().max_connect_bytes
    c = raw()
    big = b"x" * MIB  # after the handshake a 1 MiB publish is as fine as ever
    body = json.dumps({"topic": "t", "publishMessage": {"binaryMessage": {"message": ""}}})
    publish = codec.encode(
        [
            codec.int32(":message-type", rpc.APPLICATION_MESSAGE),
            codec.int32(":message-flags", 0),
            codec.int32(":stream-id", 1),
            codec.string("operation", PUBLISH),
        ],
        body.encode().replace(b'""', b'"' + big + b'"'),
    )
    c.send_bytes(_connect_frame(core.token, size=cap) + publish)  # pipelined: one write
    ack = c.expect()
    assert kinds([ack]) == [(rpc.CONNECT_ACK, rpc.CONNECTION_ACCEPTED, 0)]
    reply = c.expect()
    assert kinds([reply]) == [(rpc.APPLICATION_MESSAGE, rpc.TERMINATE_STREAM, 1)]
    over = raw()
    over.send_bytes(_connect_frame(core.token, size=cap + 1))
    assert kinds(over.until_closed()) == [PROTOCOL_ERROR_ON_0]


# --- connections per token -------------------------------------------------------------------


def test_one_connection_over_the_per_token_limit_is_refused_until_one_closes(
    raw: Callable[[], RawClient], core: Core
) -> None:
    held = [raw() for _ in range(PER_TOKEN)]
    for c in held:
        c.handshake(core.token)
    extra = raw()
    extra.send_connect(core.token)
    assert kinds(extra.until_closed()) == [(rpc.CONNECT_ACK, 0, 0)]
    other = raw()
    other.handshake(core.other)  # the limit is per token
    held.pop().close()
    assert _wait_for(lambda: core.connections() == PER_TOKEN)
    again = raw()
    again.handshake(core.token)
    again.send(rpc.PING, payload=b"in")
    assert again.expect().payload == b"in"


def test_the_real_client_over_the_per_token_limit_gets_access_denied(
    raw: Callable[[], RawClient], core: Core
) -> None:
    env = core.thread.component_env("com.test.Real", pubsub_policy(["*"], ["*"]))
    held = [raw() for _ in range(PER_TOKEN)]
    for c in held:
        c.handshake(env["SVCUID"])
    with pytest.raises(AgentError) as info:
        AgentProcess(env)
    assert info.value.error == "AccessDeniedError"
    held.pop().close()
    assert _wait_for(lambda: core.connections() == PER_TOKEN - 1)
    with AgentProcess(env) as agent:  # one place free: served again
        sub = agent("subscribe", topic="real/x")["sub"]
        agent("publish", topic="real/x", json={"n": 1})
        assert agent("events", sub=sub, n=1)["events"] == [{"topic": "real/x", "json": {"n": 1}}]


# --- a closing connection whose peer never reads ---------------------------------------------


def test_a_closed_connection_that_never_reads_is_aborted_after_the_grace(
    raw: Callable[[], RawClient], core: Core
) -> None:
    name = "com.test.Gone"
    token = core.thread.register(name, {"accessControl": pubsub_policy(["*"], ["*"])})
    sleeper = raw()
    sleeper.handshake(token)
    sleeper.call(SUBSCRIBE, {"topic": "gone/x"})
    pub = raw()
    pub.handshake(core.other)
    for _ in range(20):  # ~2.7 MB: far more than the socket takes, far less than a budget
        pub.call(PUBLISH, _binary("gone/x", 100_000))
    queued = core.thread.call(lambda: core.thread.ipc.server.outbound.of(name))
    assert queued > 1_000_000
    core.thread.call(lambda: core.thread.ipc.unregister_component(name))
    start = time.monotonic()
    assert _wait_for(lambda: core.connections() == 1, timeout=CLOSE_GRACE_S + 3)
    assert time.monotonic() - start >= CLOSE_GRACE_S * 0.8
    assert core.thread.call(lambda: core.thread.ipc.server.outbound.of(name)) == 0


def _binary(topic: str, size: int) -> dict[str, Any]:
    message = base64.b64encode(os.urandom(size)).decode()
    return {"topic": topic, "publishMessage": {"binaryMessage": {"message": message}}}


# --- a core in its own process: the budgets and its RSS -------------------------------------


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


@dataclass
class ChildCore:
    proc: subprocess.Popen[bytes]
    socket: str
    tokens: dict[str, str]
    log: Path
    _buf: bytes = b""

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stats\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the core exited ({self.proc.poll()})"
        result: dict[str, Any] = json.loads(line)
        return result

    def memory(self) -> dict[str, int]:
        return _status(self.proc.pid)

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == name:
                    found.append(record)
        return found

    def env(self, name: str) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": self.socket,
            "SVCUID": self.tokens[name],
        }


@contextlib.contextmanager
def child_core(limits: dict[str, Any], names: list[str]) -> Iterator[ChildCore]:
    root = Path(tempfile.mkdtemp(prefix="ggv-", dir="/tmp"))  # short socket path
    log = root / "core.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.core.core_child", str(root), json.dumps(limits), *names],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        assert proc.stdout is not None
        hello = json.loads(proc.stdout.readline())
        yield ChildCore(proc, hello["socket"], hello["tokens"], log)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(root, ignore_errors=True)


def test_oversized_first_frames_cost_the_core_no_memory() -> None:
    """Twenty connections, each a 24 MiB prelude and 4 MiB of its body: the core refuses each
    from its prelude and reads none of the body (it used to buffer all of it, unauthenticated)."""
    with child_core({}, []) as child:
        before = child.memory()
        clients = [RawClient(child.socket, timeout=5) for _ in range(20)]
        body = b"\0" * (4 * MIB)

        def attack(c: RawClient) -> float:
            start = time.monotonic()
            if c.send_bytes(_prelude(codec.MAX_MESSAGE_LEN) + body):
                with contextlib.suppress(OSError):
                    c.sock.shutdown(socket.SHUT_WR)
            c.until_closed()
            return time.monotonic() - start

        try:
            with ThreadPoolExecutor(len(clients)) as pool:
                took = list(pool.map(attack, clients))
        finally:
            for c in clients:
                c.close()
        after = child.memory()
        assert max(took) < 3  # refused at once: no handshake timeout, no body awaited
        assert after["VmHWM"] - before["VmRSS"] < 8 * MIB, (before, after)
        assert _wait_for(lambda: child.stats()["connections"] == {})
        assert len(child.events("ipc.protocol_error")) == 20


# The stalled-subscriber attack: six real clients stopped with SIGSTOP, a raw publisher flooding
# 10 KB messages, a raw reader that keeps up. Phase 1: three connections of one token (the
# per-component budget); phase 2: three components with one connection each (the total budget).
TOTAL = 10 * MIB
PER_COMPONENT = 4 * MIB
MESSAGE = 10 * 1024
PER_PHASE = 2000
CHUNK = 50
STALLED_A = "com.test.StalledA"
ONE_EACH = ["com.test.StalledB", "com.test.StalledC", "com.test.StalledD"]
READER = "com.test.Reader"
PUBLISHER = "com.test.Publisher"


@dataclass
class Reader:
    """A subscriber that reads everything, on its own thread."""

    client: RawClient
    expect: int
    counts: dict[int, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def run(self) -> None:
        try:
            while sum(self.counts.values()) < self.expect:
                msg = self.client.expect(timeout=30)
                sid = msg.get(":stream-id")
                assert isinstance(sid, int)
                self.counts[sid] = self.counts.get(sid, 0) + 1
        except BaseException as exc:  # reported by the test (a thread cannot fail it)
            self.failed.append(repr(exc))


def _start_agents(child: ChildCore, names: list[str]) -> list[AgentProcess]:
    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(lambda n: AgentProcess(child.env(n), timeout=30), names))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stalled_real_subscribers_are_cut_off_within_the_budgets() -> None:
    limits = {"outbound_total": TOTAL, "outbound_per_component": PER_COMPONENT}
    names = [STALLED_A, *ONE_EACH, READER, PUBLISHER]
    with child_core(limits, names) as child:
        agents = _start_agents(child, [STALLED_A] * 3 + ONE_EACH)
        try:
            for i, agent in enumerate(agents):
                agent("subscribe", topic="stall/a" if i < 3 else "stall/b")
            reader = Reader(RawClient(child.socket, timeout=30), 2 * PER_PHASE)
            reader.client.handshake(child.tokens[READER])
            reader.client.call(SUBSCRIBE, {"topic": "stall/a"})
            reader.client.call(SUBSCRIBE, {"topic": "stall/b"})
            reading = threading.Thread(target=reader.run, daemon=True)
            reading.start()
            for agent in agents:
                os.kill(agent.proc.pid, signal.SIGSTOP)
            pub = RawClient(child.socket, timeout=30)
            pub.handshake(child.tokens[PUBLISHER])
            frame = _binary("stall/x", MESSAGE)
            before = child.memory()
            samples = []
            for topic in ("stall/a", "stall/b"):
                frame["topic"] = topic
                payload = json.dumps(frame).encode()
                for _ in range(PER_PHASE // CHUNK):
                    first = pub.next_stream
                    data = b"".join(_publish_frame(pub, payload) for _ in range(CHUNK))
                    pub.send_bytes(data)
                    for k in range(CHUNK):
                        reply = pub.expect(timeout=30)
                        assert reply.get(":stream-id") == first + k
                    samples.append(child.stats())
                phase = child.stats()
                stalled = [STALLED_A] if topic == "stall/a" else ONE_EACH
                # Aborted, not closing: gone while their clients are still stopped, books at 0.
                assert all(phase["connections"].get(n, 0) == 0 for n in stalled), phase
                assert all(n not in phase["by_component"] for n in stalled), phase
            after = child.memory()
            pub.close()
            reading.join(30)
        finally:
            for agent in agents:
                agent.proc.kill()
                agent.close()
        reader.client.close()
        final = child.stats()
        cuts = child.events("ipc.slow_consumer")

    for s in samples:  # the books hold every sample to both budgets ...
        assert s["total"] <= TOTAL, s
        assert all(n <= PER_COMPONENT for n in s["by_component"].values()), s
        assert s["actual_total"] <= s["total"], s  # ... and never count less than is held
        for name in [STALLED_A, *ONE_EACH]:  # a stopped client's queue is booked exactly
            assert s["by_component"].get(name, 0) == s["actual_by_component"].get(name, 0), s
    assert max(s["total"] for s in samples) > PER_COMPONENT  # the attack did fill the books
    assert final["total"] == final["actual_total"] == 0
    assert reader.failed == []
    assert sorted(reader.counts.values()) == [PER_PHASE, PER_PHASE]  # the reader lost nothing
    assert [(c["component"], c["budget"]) for c in cuts[:3]] == [(STALLED_A, "component")] * 3
    assert sorted(c["component"] for c in cuts[3:]) == ONE_EACH
    assert cuts[3]["budget"] == "total"  # three components of 3.3 MiB: over 10 MiB together
    assert final["cut_offs"] == 6
    grew = after["VmHWM"] - before["VmRSS"]
    print(f"core RSS {before['VmRSS'] / MIB:.0f} MiB -> peak {after['VmHWM'] / MIB:.0f} MiB")
    assert grew < TOTAL + 24 * MIB, (before, after)


def _publish_frame(client: RawClient, payload: bytes) -> bytes:
    sid = client.next_stream
    client.next_stream += 1
    return codec.encode(
        [
            codec.int32(":message-type", rpc.APPLICATION_MESSAGE),
            codec.int32(":message-flags", 0),
            codec.int32(":stream-id", sid),
            codec.string(":content-type", rpc.JSON),
            codec.string("service-model-type", PUBLISH + "Request"),
            codec.string("operation", PUBLISH),
        ],
        payload,
    )


# --- the command line ------------------------------------------------------------------------


def test_core_run_options_set_the_limits() -> None:
    from ggvision.cli import build_parser
    from ggvision.cli._core_run import limits_of

    run = ["core", "run", "--recipe-dir", "r"]
    assert limits_of(build_parser().parse_args(run)) == Limits()
    args = build_parser().parse_args(
        [
            *run,
            "--outbound-budget",
            "100",
            "--component-outbound-budget",
            "10",
            "--connections-per-token",
            "4",
            "--handshake-timeout",
            "1.5",
        ]
    )
    assert limits_of(args) == Limits(
        outbound_total=100 * MIB,
        outbound_per_component=10 * MIB,
        connections_per_token=4,
        handshake_timeout_s=1.5,
    )
