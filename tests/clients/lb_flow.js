// Several stock socket.io-client apps and one device through a load balancer.
// argv: base url, serial, device token, access token, vehicle id,
//       apps with default options, apps with polling only
// Prints JSON lines: {"app": {i, sid, transport}} per app once watching,
// {"loc_ack": ...}, then {"done": {"locs": [per-app loc count], "transports": [...], "device": {sid, transport}}}.
const { io } = require(process.env.ROADHUB_TEST_NODE_MODULES + "/socket.io-client");
const [base, serial, deviceToken, accessToken, vehicleArg, defaultArg, pollingArg] = process.argv.slice(2);
const vehicle = Number(vehicleArg);
const nDefault = Number(defaultArg);
const nPolling = Number(pollingArg);
const out = (k, v) => console.log(JSON.stringify({ [k]: v }));
const fail = (why) => { console.log(JSON.stringify({ error: why })); process.exit(1); };
setTimeout(() => fail("timeout"), 25000);

const apps = [];
const locs = [];
let watching = 0;
let closing = false;
const total = nDefault + nPolling;
// Wait until every default-options client has upgraded (bounded by the timeout above).
const upgraded = (socket) => new Promise((resolve) => {
  const check = () => socket.io.engine.transport.name === "websocket" ? resolve() : setTimeout(check, 20);
  check();
});

for (let i = 0; i < total; i++) {
  const opts = i < nDefault ? {} : { transports: ["polling"] };
  const app = io(base + "/app", { ...opts, auth: { token: accessToken }, reconnection: false, forceNew: true });
  apps.push(app);
  locs.push(0);
  app.on("connect_error", (e) => fail("app " + i + " connect_error " + e.message));
  app.on("disconnect", (reason) => closing || fail("app " + i + " disconnected: " + reason));
  app.on("loc", (msg) => { if (msg.vehicle === vehicle) locs[i] += 1; });
  app.on("connect", () => {
    app.emit("watch", { vehicle }, async (watch) => {
      if (!watch || watch.ok !== true) fail("watch " + JSON.stringify(watch));
      if (i < nDefault) await upgraded(app);
      out("app", { i, sid: app.io.engine.id, transport: app.io.engine.transport.name });
      watching += 1;
      if (watching === total) startDevice();
    });
  });
}

function startDevice() {
  const device = io(base + "/device", { auth: { serial, token: deviceToken }, reconnection: false, forceNew: true });
  device.on("connect_error", (e) => fail("device connect_error " + e.message));
  device.on("connect", async () => {
    await upgraded(device);
    device.emit("loc", { points: [{ t: Date.now(), lat: 37.5, lon: 127.1, spd: 30 }] }, (ack) => {
      out("loc_ack", ack);
      // Let every delivery (and any duplicate) arrive.
      setTimeout(() => {
        out("done", {
          locs,
          transports: apps.map((a) => a.io.engine.transport.name),
          device: { sid: device.io.engine.id, transport: device.io.engine.transport.name },
        });
        closing = true;
        apps.forEach((a) => a.close());
        device.close();
        process.exit(0);
      }, 1500);
    });
  });
}
