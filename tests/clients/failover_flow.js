// A node killed behind a load balancer: stock socket.io-client 4.8 sockets
// with default options (polling, then upgrade; reconnection on, default
// delays) reconnect through their own logic.
//
// argv: base url (nginx), serial, device token, access token, vehicle id,
//       acks wanted after the device's reconnect, ms to go on after the
//       device's disconnect (so that the dead node's reaping is seen),
//       and optionally the device's reconnection delay in ms (fixed: no
//       randomization; default: the stock delays, 1 s +-50 % then doubling).
//
// A device (/device) and app "b" (/app) get sessions on node2, app "a" on
// node1 (sids start with the node id; a socket on the wrong node is closed
// and opened again with forceNew, at most 20 tries). Each app re-emits
// `watch` on every `connect`. The device emits `loc` every 100 ms with an
// ack (while disconnected the stock client buffers the emits and sends them
// once reconnected). Prints JSON lines:
//   {"ready": {...}}  all connected (WebSocket), locs flowing to both apps;
//                     the test then kills node2 with SIGKILL
//   {"done": {...}}   the device reconnected and `acks` more points were
//                     acknowledged, both apps got `loc` since, and `settle`
//                     ms passed since the device's disconnect; the sockets
//                     stay connected until stdin closes (then exit 0)
//   {"error": "..."}  and exit 1
const { io } = require(process.env.ROADHUB_TEST_NODE_MODULES + "/socket.io-client");
const [base, serial, deviceToken, accessToken, vehicleArg, acksArg, settleArg, delayArg] = process.argv.slice(2);
const vehicle = Number(vehicleArg);
const wantAcks = Number(acksArg);
const settleMs = Number(settleArg);
const deviceDelay = Number(delayArg || 0);
const deviceOpts = deviceDelay > 0
  ? { reconnectionDelay: deviceDelay, reconnectionDelayMax: deviceDelay, randomizationFactor: 0 }
  : {};
const started = Date.now();
const now = () => Date.now() - started;
const out = (k, v) => console.log(JSON.stringify({ [k]: v }));
const fail = (why) => {
  console.log(JSON.stringify({ error: why, at: now(), state: state() }));
  process.exit(1);
};
const deadline = setTimeout(() => fail("timeout"), 60000);

const MAX_TRIES = 20;
const sid = (s) => (s.io.engine ? s.io.engine.id : null);
const onNode = (s, node) => typeof sid(s) === "string" && sid(s).startsWith(node + ".");

// Open a socket (default options) until its session is on `node`.
async function openOn(nsp, auth, node, opts = {}) {
  for (let tries = 1; tries <= MAX_TRIES; tries++) {
    const s = io(base + nsp, { ...opts, auth, forceNew: true });
    const r = await new Promise((resolve) => {
      s.once("connect", () => resolve(null));
      s.once("connect_error", (e) => resolve(e.message));
    });
    if (r !== null) fail(nsp + " connect_error " + r);
    if (onNode(s, node)) return { socket: s, tries };
    s.close();
  }
  fail(nsp + " not on " + node + " after " + MAX_TRIES + " tries");
}

const upgraded = (s) => new Promise((resolve) => {
  const check = () => (s.io.engine.transport.name === "websocket" ? resolve() : setTimeout(check, 20));
  check();
});

// The device's story.
const dev = {
  sidBefore: null, sidAfter: null, tries: 0, downAt: null, reason: null, upAt: null,
  attempts: 0, reconnectErrors: [], acked: [], nacked: [], sent: 0, acksAfter: 0,
};
// The apps' stories: a on node1, b on node2.
const apps = {};
for (const name of ["a", "b"]) {
  apps[name] = {
    sidBefore: null, sidAfter: null, tries: 0, downAt: null, reason: null, upAt: null,
    attempts: 0, watches: 0, locsBefore: 0, locsAfter: 0, presence: [],
  };
}
let ready = false;
let readyAt = null;

function state() {
  return { device: { ...dev, acked: dev.acked.length }, apps };
}

function watchOnConnect(name, s) {
  const a = apps[name];
  const watch = () => s.emit("watch", { vehicle }, (r) => {
    if (!r || r.ok !== true) fail("app " + name + " watch " + JSON.stringify(r));
    a.watches += 1;
  });
  s.on("connect", () => {
    if (a.downAt !== null && a.upAt === null) {
      a.upAt = now();
      a.sidAfter = sid(s);
    }
    watch();
  });
  s.on("disconnect", (reason) => {
    if (!ready) fail("app " + name + " disconnected before the kill: " + reason);
    if (a.downAt === null) {
      a.downAt = now();
      a.reason = reason;
    }
  });
  s.io.on("reconnect_attempt", () => { a.attempts += 1; });
  s.on("loc", (msg) => {
    if (msg.vehicle !== vehicle) return;
    if (!ready) a.locsBefore += 1;
    // After the kill: counted once the device is back and this app's
    // session is on node1.
    else if (dev.upAt !== null && onNode(s, "node1")) a.locsAfter += 1;
  });
  s.on("presence", (p) => {
    if (ready && p.vehicle === vehicle) a.presence.push({ online: p.online, at: now() });
  });
  watch();
}

let lastT = 0;
const pending = new Set(); // points sent, not answered yet
function sendLoc(device) {
  const t = Math.max(Date.now(), lastT + 1);
  lastT = t;
  dev.sent += 1;
  pending.add(t);
  device.emit("loc", { points: [{ t, lat: 37.5, lon: 127.1, spd: 30 }] }, (ack) => {
    pending.delete(t);
    if (ack && ack.ok === true && ack.stored === 1) {
      dev.acked.push(t);
      if (dev.upAt !== null) dev.acksAfter += 1;
    } else {
      dev.nacked.push({ t, ack });
    }
  });
}

async function main() {
  const a = await openOn("/app", { token: accessToken }, "node1");
  apps.a.tries = a.tries;
  apps.a.sidBefore = sid(a.socket);
  watchOnConnect("a", a.socket);
  const b = await openOn("/app", { token: accessToken }, "node2");
  apps.b.tries = b.tries;
  apps.b.sidBefore = sid(b.socket);
  watchOnConnect("b", b.socket);
  const d = await openOn("/device", { serial, token: deviceToken }, "node2", deviceOpts);
  const device = d.socket;
  dev.tries = d.tries;
  dev.sidBefore = sid(device);
  device.on("connect_error", (e) => fail("device connect_error " + e.message));
  device.on("disconnect", (reason) => {
    if (!ready) fail("device disconnected before the kill: " + reason);
    if (dev.downAt === null) {
      dev.downAt = now();
      dev.reason = reason;
    }
  });
  device.on("connect", () => {
    if (dev.downAt !== null && dev.upAt === null) {
      dev.upAt = now();
      dev.sidAfter = sid(device);
    }
  });
  device.io.on("reconnect_attempt", () => { dev.attempts += 1; });
  device.io.on("reconnect_error", (e) => { dev.reconnectErrors.push(String(e && e.message)); });
  setInterval(() => sendLoc(device), 100);

  // Ready: everyone upgraded to WebSocket, points acked, both apps get them.
  await Promise.all([upgraded(a.socket), upgraded(b.socket), upgraded(device)]);
  await new Promise((resolve) => {
    const check = () => (dev.acked.length >= 5 && apps.a.locsBefore >= 3 && apps.b.locsBefore >= 3
      ? resolve() : setTimeout(check, 20));
    check();
  });
  ready = true;
  readyAt = now();
  out("ready", {
    at: readyAt,
    device: { sid: dev.sidBefore, tries: dev.tries },
    apps: { a: { sid: apps.a.sidBefore, tries: apps.a.tries }, b: { sid: apps.b.sidBefore, tries: apps.b.tries } },
  });

  const finished = () => dev.upAt !== null && dev.acksAfter >= wantAcks
    && apps.a.locsAfter >= 3 && apps.b.locsAfter >= 3 && apps.b.upAt !== null
    && now() - dev.downAt >= settleMs;
  await new Promise((resolve) => {
    const check = () => (finished() ? resolve() : setTimeout(check, 50));
    check();
  });
  const acked = dev.acked.slice();
  // Sent, never answered (in flight when node2 died): stored or not.
  const unanswered = [...pending].filter((t) => t < lastT - 2000);
  out("done", { at: now(), readyAt, device: { ...dev, acked, unanswered }, apps });
  // Stay connected (the test checks the hub's view) until stdin closes.
  clearTimeout(deadline);
  setTimeout(() => fail("stdin still open 30 s after done"), 30000);
  process.stdin.on("close", () => {
    a.socket.close();
    b.socket.close();
    device.close();
    process.exit(0);
  });
  process.stdin.resume();
}

main().catch((e) => fail("exception " + (e && e.stack)));
