import { createServer, type TLSSocket } from "node:tls";
import { agentdServerOptions, checkControlPlanePeer, type TlsIdentity } from "../identity/tls.ts";
import type { Logger } from "../log.ts";
import type { Agentd } from "./agentd.ts";

/**
 * agentd's listener: strict mTLS. The handshake refuses a client without a certificate chaining
 * to the corral CA; `checkControlPlanePeer` then pins the control plane's CN and clientAuth before
 * the engine reads a byte. A refused peer learns nothing but a closed connection; the log says why.
 */

export interface AgentdListener {
  port: number;
  close(): Promise<void>;
}

export interface ListenOptions {
  identity: TlsIdentity;
  controlPlaneCN: string;
  host: string;
  port: number;
}

export function listenTls(agentd: Agentd, opts: ListenOptions, log: Logger): Promise<AgentdListener> {
  const server = createServer(agentdServerOptions({ ...opts.identity, controlPlaneCN: opts.controlPlaneCN }));
  server.on("secureConnection", (socket: TLSSocket) => {
    const peer = checkControlPlanePeer(socket, opts.controlPlaneCN);
    if (!peer.ok) {
      log.warn({ remote: socket.remoteAddress, reason: peer.reason }, "agentd: peer refused");
      socket.destroy();
      return;
    }
    log.info({ remote: socket.remoteAddress }, "agentd: control plane connected");
    agentd.handle(socket);
  });
  server.on("tlsClientError", (err, socket) => {
    log.warn({ remote: socket.remoteAddress, reason: err.message }, "agentd: TLS handshake refused");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      // After the start an error (an accept that failed: no file descriptors left) is logged, not fatal.
      server.on("error", (err) => log.error({ err: err.message }, "agentd: listener error"));
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : opts.port;
      resolve({ port, close: () => new Promise<void>((done) => server.close(() => done())) });
    });
  });
}
