// The hub's device and app flow with the stock socket.io-client.
// argv: base url, serial, device token, access token, vehicle id, transports ("default" | "websocket")
const { io } = require(process.env.ROADHUB_TEST_NODE_MODULES + "/socket.io-client");
const [base, serial, deviceToken, accessToken, vehicleArg, mode] = process.argv.slice(2);
const vehicle = Number(vehicleArg);
const opts = mode === "websocket" ? { transports: ["websocket"] } : {};
const out = (k, v) => console.log(JSON.stringify({ [k]: v }));
const fail = (why) => { console.log(JSON.stringify({ error: why })); process.exit(1); };
setTimeout(() => fail("timeout"), 15000);

const app = io(base + "/app", { ...opts, auth: { token: accessToken }, reconnection: false });
app.on("connect_error", (e) => fail("app connect_error " + e.message));
app.on("connect", () => {
  app.emit("watch", { vehicle }, (watch) => {
    out("watch", watch);
    const device = io(base + "/device", { ...opts, auth: { serial, token: deviceToken }, reconnection: false });
    device.on("connect_error", (e) => fail("device connect_error " + e.message));
    device.on("command", (cmd, ack) => { out("command", cmd); ack({ ok: true, echoed: cmd.name }); });
    device.on("connect", () => {
      device.emit("loc", { points: [{ t: Date.now(), lat: 37.5, lon: 127.1, spd: 30 }] }, (ack) => {
        out("loc_ack", ack);
        app.emit("command", { vehicle, name: "snapshot", args: { channel: "front" } }, (answer) => {
          out("command_answer", answer);
          out("transports", [app.io.engine.transport.name, device.io.engine.transport.name]);
          device.close(); app.close(); process.exit(0);
        });
      });
    });
  });
});
app.on("loc", (msg) => out("loc", msg));
app.on("presence", (msg) => out("presence", msg));
