"""Drives python-socketio's client against roadhub's echo server
(roadhub::socketio::echo) and prints what it saw as one JSON line.

Run by tests/stock_clients.rs: python socketio_client.py URL MODE, where
MODE is "default" (polling, then the upgrade) or "websocket".
"""
import json
import sys
import threading

import socketio

url, mode = sys.argv[1], sys.argv[2]
transports = ["websocket"] if mode == "websocket" else ["polling", "websocket"]
out = {}
received = {}
arrived = threading.Condition()


def record(key, value):
    with arrived:
        received[key] = value
        arrived.notify_all()


def wait(key):
    with arrived:
        if not arrived.wait_for(lambda: key in received, timeout=10):
            raise TimeoutError(f"no {key}")
        return received.pop(key)


sio = socketio.Client(reconnection=False)
sio.on("auth", lambda data: record("auth", data))
sio.on("auth", lambda data: record("custom-auth", data), namespace="/custom")
sio.on("message-back", lambda *args: record("message-back", args))
sio.on("acked", lambda *args: record("acked", args))
sio.on("ack-me", lambda question: ("pong-" + question, b"\x07"))

sio.connect(
    url,
    auth={"token": "abc"},
    namespaces=["/", "/custom"],
    transports=transports,
    wait_timeout=10,
)
out["auth"] = wait("auth")
out["customAuth"] = wait("custom-auth")
out["ack"] = sio.call("message-with-ack", ("hello", 42, {"a": [1]}), timeout=5)

sio.emit("message", (b"\x01\x02\x03", {"nested": b"xyz"}))
data, nested = wait("message-back")
out["binary"] = [list(data), nested["nested"].decode()]
ack_data, ack_text = sio.call("message-with-ack", (b"\x09\x08", "t"), timeout=5)
out["binaryAck"] = [list(ack_data), ack_text]

sio.emit("request-ack", "q")
answer, answer_bytes = wait("acked")
out["serverAck"] = [answer, list(answer_bytes)]

out["customAck"] = sio.call("message-with-ack", "c", namespace="/custom", timeout=5)
out["transport"] = sio.transport()
sio.disconnect()

refused = socketio.Client(reconnection=False)
try:
    refused.connect(url, namespaces=["/nope"], transports=transports, wait_timeout=5)
    out["badNamespace"] = "connected"
except socketio.exceptions.ConnectionError as e:
    out["badNamespace"] = str(e)
finally:
    refused.disconnect()

print(json.dumps(out))
