// Drives the stock socket.io-client against roadhub's echo server
// (roadhub::socketio::echo) and prints what it saw as one JSON line.
// Run by tests/stock_clients.rs: node socketio_client.js URL MODE, with
// NODE_PATH holding socket.io-client.
const { io } = require("socket.io-client");

const [url, mode] = process.argv.slice(2);
// "default": polling, then the upgrade; "websocket" or "polling": that only.
const options = mode === "default" ? {} : { transports: [mode] };
const out = {};
const fail = (why) => {
  console.log(JSON.stringify({ error: String(why), partial: out }));
  process.exit(1);
};
setTimeout(() => fail("timed out"), 20000).unref();

const once = (emitter, event) =>
  new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
const bytes = (buf) => [...new Uint8Array(buf)];
// Emit with an ack; resolves with all the ack's arguments.
const call = (socket, ...args) =>
  new Promise((resolve, reject) =>
    socket.timeout(5000).emit(...args, (err, ...reply) => (err ? reject(err) : resolve(reply)))
  );

async function run() {
  const socket = io(url, { ...options, auth: { token: "abc" }, reconnection: false });
  socket.io.once("open", () => {
    out.firstTransport = socket.io.engine.transport.name;
    socket.io.engine.once("upgrade", (transport) => (out.upgradedTo = transport.name));
  });
  socket.on("connect_error", (e) => fail("connect_error: " + e.message));
  const [auth] = await once(socket, "auth");
  out.auth = auth;

  // Client to server, acknowledged.
  out.ack = await call(socket, "message-with-ack", "hello", 42, { a: [1] });

  // Binary both ways, nested too.
  const back = once(socket, "message-back");
  socket.emit("message", Buffer.from([1, 2, 3]), { nested: Buffer.from("xyz") });
  const [data, nested] = await back;
  out.binary = [bytes(data), Buffer.from(nested.nested).toString()];
  const [ackData, ackText] = await call(socket, "message-with-ack", Buffer.from([9, 8]), "t");
  out.binaryAck = [bytes(ackData), ackText];

  // Server to client, acknowledged by the client (with binary).
  socket.once("ack-me", (question, callback) => callback("pong-" + question, Buffer.from([7])));
  const acked = once(socket, "acked");
  socket.emit("request-ack", "q");
  const [answer, answerBytes] = await acked;
  out.serverAck = [answer, bytes(answerBytes)];

  // A second namespace on the same connection.
  const custom = socket.io.socket("/custom", { auth: { ns: "custom" } });
  const [customAuth] = await once(custom, "auth");
  out.customAuth = customAuth;
  out.customAck = await call(custom, "message-with-ack", "c");

  // An unknown namespace is refused.
  const nope = socket.io.socket("/nope");
  const [err] = await once(nope, "connect_error");
  out.badNamespace = err.message;

  // With default options the connection upgrades to WebSocket.
  if (mode === "default" && socket.io.engine.transport.name !== "websocket") {
    await once(socket.io.engine, "upgrade");
  }
  out.transport = socket.io.engine.transport.name;
  out.afterUpgrade = await call(socket, "message-with-ack", "after");

  // Leaving /custom leaves the main namespace working.
  custom.disconnect();
  out.mainAfterCustomLeft = await call(socket, "message-with-ack", "main");
  socket.disconnect();
  console.log(JSON.stringify(out));
  process.exit(0);
}

run().catch(fail);
