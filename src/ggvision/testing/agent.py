"""A scriptable component process for tests: the real ``GreengrassCoreIPCClientV2`` driven by JSON
lines on stdin, answering JSON lines on stdout.

Run it as ``python -m ggvision.testing.agent`` with the Nucleus environment (see
:func:`ggvision.core.environment.nucleus_env`); :class:`AgentProcess` does that for you.
Each request ``{"op": ..., ...}`` gets exactly one reply ``{"ok": true, ...}`` or
``{"ok": false, "error": "<exception class>", "message": "..."}``. Events of subscriptions are
buffered in the agent and fetched with ``{"op": "events", "sub": id, "n": N, "timeout": s}``.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any


class _Agent:  # pragma: no cover - runs in the child process
    def __init__(self) -> None:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        self.client = GreengrassCoreIPCClientV2()
        self.subs: dict[int, Any] = {}
        self.events: dict[int, list[Any]] = {}
        self.errors: dict[int, list[str]] = {}
        self.cond = threading.Condition()
        self.next_id = 0
        self.validate_reply: dict[str, Any] = {"status": "ACCEPTED", "message": ""}

    def _new_sub(self) -> int:
        self.next_id += 1
        self.events[self.next_id] = []
        self.errors[self.next_id] = []
        return self.next_id

    def _push(self, sid: int, item: Any) -> None:
        with self.cond:
            self.events[sid].append(item)
            self.cond.notify_all()

    def _err(self, sid: int, exc: Exception) -> bool:
        with self.cond:
            self.errors[sid].append(type(exc).__name__)
            self.cond.notify_all()
        return True

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        from awsiot.greengrasscoreipc import model

        op = req["op"]
        c = self.client
        if op == "publish":
            if "json" in req:
                msg = model.PublishMessage(json_message=model.JsonMessage(message=req["json"]))
            else:
                msg = model.PublishMessage(
                    binary_message=model.BinaryMessage(message=base64.b64decode(req["binary"]))
                )
            c.publish_to_topic(topic=req["topic"], publish_message=msg)
            return {}
        if op == "subscribe":
            sid = self._new_sub()

            def on_event(ev: Any) -> None:
                if ev.json_message is not None:
                    self._push(
                        sid,
                        {"topic": ev.json_message.context.topic, "json": ev.json_message.message},
                    )
                else:
                    self._push(
                        sid,
                        {
                            "topic": ev.binary_message.context.topic,
                            "binary": base64.b64encode(ev.binary_message.message).decode(),
                        },
                    )

            _, operation = c.subscribe_to_topic(
                topic=req["topic"],
                receive_mode=req.get("receive_mode"),
                on_stream_event=on_event,
                on_stream_error=lambda e: self._err(sid, e),
            )
            self.subs[sid] = operation
            return {"sub": sid}
        if op == "subscribe_config":
            sid = self._new_sub()
            _, operation = c.subscribe_to_configuration_update(
                component_name=req.get("component"),
                key_path=req.get("key_path"),
                on_stream_event=lambda ev: self._push(
                    sid,
                    {
                        "component": ev.configuration_update_event.component_name,
                        "key_path": ev.configuration_update_event.key_path,
                    },
                ),
                on_stream_error=lambda e: self._err(sid, e),
            )
            self.subs[sid] = operation
            return {"sub": sid}
        if op == "subscribe_validate":
            sid = self._new_sub()
            self.validate_reply = {
                "status": req.get("status", "ACCEPTED"),
                "message": req.get("message", ""),
            }

            def on_validate(ev: Any) -> None:
                e = ev.validate_configuration_update_event
                self._push(
                    sid, {"configuration": e.configuration, "deployment_id": e.deployment_id}
                )
                c.send_configuration_validity_report(
                    configuration_validity_report=model.ConfigurationValidityReport(
                        status=self.validate_reply["status"],
                        deployment_id=e.deployment_id,
                        message=self.validate_reply["message"],
                    )
                )

            _, operation = c.subscribe_to_validate_configuration_updates(
                on_stream_event=lambda ev: threading.Thread(target=on_validate, args=(ev,)).start(),
                on_stream_error=lambda e: self._err(sid, e),
            )
            self.subs[sid] = operation
            return {"sub": sid}
        if op == "subscribe_updates":
            # SubscribeToComponentUpdates. Events: {"pre": PreComponentUpdateEvent payload},
            # {"post": PostComponentUpdateEvent payload}, and the outcome of each answer:
            # {"deferred": recheckAfterMs} or {"defer_error": name, "message": ...}. ``answers``:
            # the recheckAfterMs of the answer to each PreComponentUpdateEvent in turn (null: no
            # answer), ``then`` for those after (default 0: go ahead); ``answer_after_s``: how
            # long to wait before answering.
            sid = self._new_sub()
            answers: list[int | None] = list(req.get("answers", []))
            then: int | None = req.get("then", 0)
            delay = float(req.get("answer_after_s", 0))
            lock = threading.Lock()

            def on_pre(pre: Any) -> None:
                with lock:
                    answer = answers.pop(0) if answers else then
                self._push(sid, {"pre": pre._to_payload()})
                if answer is None:
                    return
                time.sleep(delay)
                try:
                    c.defer_component_update(
                        deployment_id=pre.deployment_id,
                        message="agent",
                        recheck_after_ms=answer,
                    )
                except Exception as exc:
                    self._push(
                        sid,
                        {
                            "defer_error": type(exc).__name__,
                            "message": getattr(exc, "message", None) or str(exc),
                        },
                    )
                    return
                self._push(sid, {"deferred": answer})

            def on_update(ev: Any) -> None:
                if ev.pre_update_event is not None:
                    threading.Thread(target=on_pre, args=(ev.pre_update_event,)).start()
                if ev.post_update_event is not None:
                    self._push(sid, {"post": ev.post_update_event._to_payload()})

            _, operation = c.subscribe_to_component_updates(
                on_stream_event=on_update,
                on_stream_error=lambda e: self._err(sid, e),
            )
            self.subs[sid] = operation
            return {"sub": sid}
        if op == "subscribe_iot":
            sid = self._new_sub()
            _, operation = c.subscribe_to_iot_core(
                topic_name=req["topic"],
                qos=req.get("qos", "1"),
                on_stream_event=lambda ev: self._push(
                    sid,
                    {
                        "topic": ev.message.topic_name,
                        "payload": base64.b64encode(ev.message.payload).decode(),
                    },
                ),
                on_stream_error=lambda e: self._err(sid, e),
            )
            self.subs[sid] = operation
            return {"sub": sid}
        if op == "close":
            self.subs.pop(req["sub"]).close()
            return {}
        if op == "events":
            deadline = time.monotonic() + float(req.get("timeout", 5))
            n = int(req.get("n", 1))
            sid = req["sub"]
            with self.cond:
                while len(self.events[sid]) < n and time.monotonic() < deadline:
                    self.cond.wait(max(0.0, deadline - time.monotonic()))
                events, self.events[sid] = self.events[sid], []
                return {"events": events, "errors": list(self.errors[sid])}
        if op == "publish_iot":
            c.publish_to_iot_core(
                topic_name=req["topic"],
                qos=req.get("qos", "1"),
                payload=base64.b64decode(req["payload"]),
            )
            return {}
        if op == "call":
            # Any client method with plain keyword arguments; the reply is the response shape.
            kwargs = dict(req.get("kwargs", {}))
            if isinstance(kwargs.get("timestamp"), int | float):
                kwargs["timestamp"] = datetime.datetime.fromtimestamp(kwargs["timestamp"])
            resp = getattr(c, req["method"])(**kwargs)
            return {"response": resp._to_payload() if resp is not None else None}
        raise ValueError(f"unknown op {op}")

    def serve(self) -> None:
        print(json.dumps({"ok": True, "ready": True}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                reply = {"ok": True, **self.handle(json.loads(line))}
            except Exception as exc:
                reply = {
                    "ok": False,
                    "error": type(exc).__name__,
                    "message": getattr(exc, "message", None) or str(exc),
                }
            print(json.dumps(reply), flush=True)
        self.client.close()


def main() -> None:  # pragma: no cover - child process
    try:
        agent = _Agent()
    except Exception as exc:
        print(
            json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}), flush=True
        )
        sys.exit(1)
    agent.serve()


class AgentError(Exception):
    def __init__(self, reply: Mapping[str, Any]) -> None:
        super().__init__(f"{reply.get('error')}: {reply.get('message')}")
        self.error = str(reply.get("error"))
        self.message = str(reply.get("message"))


class AgentProcess:
    """Parent-side handle of an agent process."""

    def __init__(self, env: Mapping[str, str], timeout: float = 20.0) -> None:
        self.proc = subprocess.Popen(  # fixed argv: this module, no shell # nosec B603
            [sys.executable, "-m", "ggvision.testing.agent"],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.timeout = timeout
        hello = self._read()
        if not hello.get("ok"):
            self.close()
            raise AgentError(hello)

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AgentError({"error": "AgentDied", "message": f"exit {self.proc.wait(5)}"})
        result: dict[str, Any] = json.loads(line)
        return result

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; returns the reply (``ok`` false replies are returned, not raised)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; raises :class:`AgentError` when the operation failed."""
        reply = self.request(op, **fields)
        if not reply.get("ok"):
            raise AgentError(reply)
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
