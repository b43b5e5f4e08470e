import type { X509Certificate } from "node:crypto";
import { connect, type TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { PROTOCOL_VERSION } from "../../agentd/protocol.ts";
import { controlPlaneClientOptions, describeAgentPeer, type TlsIdentity } from "../../identity/tls.ts";
import type { Scheduler } from "../scheduler.ts";
import type { HelloAck, PeerSeen } from "./agent-session.ts";
import { Channel } from "./channel.ts";
import { DialAttemptError } from "./errors.ts";

/** One attempt's result: a connection whose hello was answered. */
export interface Connection {
  channel: Channel;
  hello: HelloAck;
  peer: PeerSeen;
  /** The peer's certificate, when it sent one (the register checks read its SAN). */
  cert: X509Certificate | null;
  /** The socket's remote end, host:port (what the register checks compare with the runtime's). */
  remote: string;
}

export interface ConnectDeps {
  tls: TlsIdentity;
  scheduler: Scheduler;
  log: Logger;
  /** TLS connect and hello-ack must both come within this (ms). */
  timeoutMs: number;
}

let attempts = 0;

/**
 * Dials `address` (host:port) and says hello as the control plane. The client side is
 * permissive: a certificate on the wrong chain, or none, does not abort the dial; what was seen
 * is returned and recorded (SessionConnected), and the register checks act on it. Throws
 * DialAttemptError when there is no connection or no hello-ack; the socket is then left for the
 * caller to close (its close is what the fd-leak ceiling counts), as `onSocket` handed it over.
 */
export async function connectOnce(
  agentId: string,
  address: string,
  deps: ConnectDeps,
  onSocket: (socket: TLSSocket) => void,
): Promise<Connection> {
  const { host, port } = splitAddress(address);
  const socket = connect({ host, port, ...controlPlaneClientOptions(deps.tls) });
  // Frames are small and answered one by one: Nagle would hold each up to ~40 ms.
  socket.setNoDelay(true);
  onSocket(socket);
  const channel = new Channel(socket, deps.scheduler, deps.log);
  // Before the handshake is done, an error frame is agentd refusing the hello (version, order).
  channel.onMessage = (msg) => {
    if (msg.t === "error") channel.close(`hello_refused: ${msg.code}`, false);
  };
  const key = `session-connect:${++attempts}`;
  const deadline = deps.scheduler.now() + deps.timeoutMs;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", () => resolve());
      void channel.ended.then((reason) => reject(new DialAttemptError("connect", reason)));
      deps.scheduler.arm(key, deadline, () =>
        reject(new DialAttemptError("connect_timeout", "no TLS handshake")),
      );
    });
    const seen = describeAgentPeer(socket);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    channel.send({ t: "hello", v: PROTOCOL_VERSION, agentId });
    const ack = await channel.expect("hello-ack", Math.max(0, deadline - deps.scheduler.now()));
    if ("missing" in ack) {
      throw new DialAttemptError(ack.missing === "timeout" ? "handshake_timeout" : "peer_closed", ack.reason);
    }
    // What a peer put in its certificate is untrusted: bounded to what SessionConnected stores.
    const peer: PeerSeen =
      seen.peerCN === null
        ? { peerCN: null, thumbprint: null, chain: seen.reason }
        : { peerCN: seen.peerCN.slice(0, 256), thumbprint: seen.thumbprint, chain: seen.chain.slice(0, 200) };
    return { channel, hello: ack, peer, cert: seen.peerCN === null ? null : seen.cert, remote };
  } catch (err) {
    channel.close("attempt_failed", true);
    throw err;
  } finally {
    deps.scheduler.disarm(key);
  }
}

/** "host:port" or "[v6]:port". */
export function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  const port = Number(address.slice(at + 1));
  let host = address.slice(0, at);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DialAttemptError("bad_address", `not host:port: ${JSON.stringify(address)}`);
  }
  return { host, port };
}
