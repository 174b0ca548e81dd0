# A blackbox with python-socketio: connect /device, send loc and an event
# with acks, answer a command. argv: base, serial, token
import json, sys, time, socketio

base, serial, token = sys.argv[1:4]
sio = socketio.Client(reconnection=False)
done = {"command": False}

@sio.on("command", namespace="/device")
def command(cmd):
    print(json.dumps({"command": cmd}), flush=True)
    done["command"] = True
    return {"ok": True, "from": "python"}

sio.connect(base, namespaces=["/device"], auth={"serial": serial, "token": token}, wait_timeout=10)
now = int(time.time() * 1000)
ack = sio.call("loc", {"points": [{"t": now, "lat": 35.1, "lon": 129.0}]}, namespace="/device", timeout=10)
print(json.dumps({"loc_ack": ack}), flush=True)
ack = sio.call("event", {"type": "impact", "t": now}, namespace="/device", timeout=10)
print(json.dumps({"event_ack": ack}), flush=True)
print(json.dumps({"ready": True}), flush=True)
deadline = time.time() + 15
while not done["command"] and time.time() < deadline:
    time.sleep(0.05)
time.sleep(0.2)
sio.disconnect()
