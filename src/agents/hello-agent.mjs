#!/usr/bin/env node
// corral's built-in agent: proves an agent is up and who it is. Plain node:* only, because it
// runs both as a local process and in corral's node image, which holds nothing but node.
//   GET /         {"agent", "pool", "generation", "ports"} as JSON
//   GET /healthz  200 "ok"
// Listens on CORRAL_PORT_A (on CORRAL_LISTEN_HOST, default 0.0.0.0); exits 0 on SIGTERM / SIGINT.
import { createServer } from "node:http";

const env = process.env;
const port = Number(env.CORRAL_PORT_A);
if (env.CORRAL_PORT_A === undefined) {
  // A pool without host ports: nothing to serve, but the agent still lives until stopped.
  console.log(`hello-agent ${env.CORRAL_AGENT_ID ?? ""}: no CORRAL_PORT_A, not serving HTTP`);
  const idle = setInterval(() => {}, 1 << 30);
  const quit = () => {
    clearInterval(idle);
    process.exit(0);
  };
  process.on("SIGTERM", quit);
  process.on("SIGINT", quit);
} else if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(
    `hello-agent: CORRAL_PORT_A must be a port number (got ${JSON.stringify(env.CORRAL_PORT_A)})`,
  );
  process.exit(2);
}

// CORRAL_PORT_A, _B, …, _Z, _AA, …: shorter letter names first, as the allocator hands them out.
const ports = Object.keys(env)
  .map((k) => /^CORRAL_PORT_([A-Z]+)$/.exec(k)?.[1])
  .filter((letters) => letters !== undefined)
  .sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0))
  .map((letters) => Number(env[`CORRAL_PORT_${letters}`]));

const identity = {
  agent: env.CORRAL_AGENT_ID ?? null,
  pool: env.CORRAL_POOL ?? null,
  generation: env.CORRAL_GENERATION === undefined ? null : Number(env.CORRAL_GENERATION),
  ports,
};

if (env.CORRAL_PORT_A !== undefined) serve();

function serve() {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (req.method === "GET" && path === "/") {
      res.writeHead(200, { "content-type": "application/json" }).end(`${JSON.stringify(identity)}\n`);
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });

  // In a container every address (docker publishes the port); as a local process, loopback.
  const host = process.env.CORRAL_LISTEN_HOST || "0.0.0.0";

  server.on("error", (err) => {
    console.error(`hello-agent: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  });

  server.listen(port, host, () => {
    console.log(`hello-agent ${identity.agent} listening on ${host}:${port}`);
  });

  function shutdown(signal) {
    console.log(`hello-agent: ${signal}, closing`);
    server.close(() => process.exit(0));
    server.closeAllConnections(); // keep-alive clients must not hold the exit up
    setTimeout(() => process.exit(0), 1000).unref();
  }
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
}
