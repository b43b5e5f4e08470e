import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createServer, type TLSSocket } from "node:tls";
import { Agentd } from "../../src/agentd/agentd.ts";
import { encodeFrame, FrameDecoder } from "../../src/agentd/frames.ts";
import { parseToAgent, type ToAgent } from "../../src/agentd/protocol.ts";
import { agentdServerOptions, checkControlPlanePeer } from "../../src/identity/tls.ts";
import { onTeardown, tempDir } from "./teardown.ts";

/**
 * A real agentd engine (src/agentd/agentd.ts) behind agentd's strict TLS server on loopback,
 * presenting whatever certificate a test gives it (a forged one included). It records what the
 * control plane sent on each connection, so a test can see the refusal the peer got.
 */
export interface TestPeer {
  address: string;
  port: number;
  /** Messages the control plane sent, one list per connection, in order. */
  received: ToAgent[][];
  sockets: TLSSocket[];
  /** Cuts every open connection from agentd's side (the control plane sees a break). */
  dropConnections(): void;
  close(): Promise<void>;
}

export interface PeerOptions {
  certPem: string;
  keyPem: string;
  caPem: string;
  controlPlaneCN: string;
  /** What agentd says it is (hello-ack, register). */
  poolId: string;
  agentId: string;
  /** Answer hello only, never register-required (a peer that stalls the registration). */
  stallRegister?: boolean;
}

export async function startPeer(opts: PeerOptions): Promise<TestPeer> {
  const dir = tempDir("session-peer-");
  const home = join(dir, "home");
  mkdirSync(home);
  const agentd = new Agentd({
    agentId: opts.agentId,
    poolId: opts.poolId,
    stateDir: join(dir, "state"),
    home,
  });
  const received: ToAgent[][] = [];
  const sockets: TLSSocket[] = [];
  const server = createServer(agentdServerOptions(opts), (socket) => {
    if (!checkControlPlanePeer(socket, opts.controlPlaneCN).ok) {
      socket.destroy();
      return;
    }
    const log: ToAgent[] = [];
    received.push(log);
    sockets.push(socket);
    const decoder = new FrameDecoder();
    socket.on("data", (chunk: Buffer) => {
      for (const frame of decoder.push(chunk).frames) {
        const parsed = parseToAgent(frame);
        if (parsed.ok) log.push(parsed.msg);
      }
    });
    if (opts.stallRegister) answerHelloOnly(socket, opts);
    else agentd.handle(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const close = onTeardown(`session peer ${opts.agentId}`, async () => {
    for (const s of sockets) s.destroy();
    await agentd.close();
    await new Promise((r) => server.close(r));
  });
  return {
    address: `127.0.0.1:${port}`,
    port,
    received,
    sockets,
    dropConnections: () => {
      for (const s of sockets) s.destroy();
    },
    close,
  };
}

function answerHelloOnly(socket: TLSSocket, opts: PeerOptions): void {
  const decoder = new FrameDecoder();
  socket.on("data", (chunk: Buffer) => {
    for (const frame of decoder.push(chunk).frames) {
      const parsed = parseToAgent(frame);
      if (!parsed.ok || parsed.msg.t !== "hello") continue;
      const { agentId, poolId } = opts;
      const ack = { t: "hello-ack", agentId, poolId, initDone: [], commandRunning: false, commandStarts: 0 };
      socket.write(encodeFrame(ack));
    }
  });
}
