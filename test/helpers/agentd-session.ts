import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import { Agentd } from "../../src/agentd/agentd.ts";
import { type DoneMsg, type ErrorMsg, PROTOCOL_VERSION } from "../../src/agentd/protocol.ts";
import type { ExecSession, ExecSessions } from "../../src/cp/exec/session-port.ts";
import { TimerScheduler } from "../../src/cp/scheduler.ts";
import { KEEPALIVE, LiveSession } from "../../src/cp/session/agent-session.ts";
import { Channel } from "../../src/cp/session/channel.ts";
import { loadOrCreateCa } from "../../src/identity/ca.ts";
import { controlPlaneName } from "../../src/identity/names.ts";
import {
  agentdServerOptions,
  checkControlPlanePeer,
  controlPlaneClientOptions,
  describeAgentPeer,
} from "../../src/identity/tls.ts";
import { silentLogger } from "../../src/log.ts";
import { onTeardown, tempDir } from "./teardown.ts";

/**
 * A real agentd engine (src/agentd/agentd.ts) behind its strict mTLS listener on loopback, with
 * certificates from a CA of the test's own, and sessions to it as the control plane opens them:
 * TLS, hello → hello-ack, then the LiveSession that carries commands. Everything is closed by the
 * teardown.
 */
export interface AgentdHarness {
  agentId: string;
  agentd: Agentd;
  /** The agent's home: where execs run. */
  home: string;
  /** A new session to this agentd (a control plane connecting, or reconnecting after a restart). */
  connect(): Promise<{ session: LiveSession; drop(): void }>;
}

export async function startAgentd(poolId: string, agentId: string): Promise<AgentdHarness> {
  const dir = tempDir("agentd-");
  const home = join(dir, "home");
  mkdirSync(home);
  const ca = await loadOrCreateCa(join(dir, "ca"));
  const agentCert = await ca.issueAgent({ poolId, agentId });
  const cpCert = await ca.issueControlPlane("exec-test");
  const controlPlaneCN = controlPlaneName("exec-test");
  const agentd = new Agentd({ agentId, poolId, stateDir: join(dir, "state"), home, killGraceMs: 300 });
  const server = tls.createServer(
    agentdServerOptions({ ...agentCert, caPem: ca.certPem, controlPlaneCN }),
    (s) => {
      if (checkControlPlanePeer(s, controlPlaneCN).ok) agentd.handle(s);
      else s.destroy();
    },
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const scheduler = new TimerScheduler();
  const sockets = new Set<tls.TLSSocket>();
  onTeardown(`agentd ${agentId}`, async () => {
    scheduler.close();
    for (const s of sockets) s.destroy();
    await agentd.close();
    await new Promise((resolve) => server.close(resolve));
  });

  async function connect() {
    const socket = tls.connect({
      ...controlPlaneClientOptions({ ...cpCert, caPem: ca.certPem }),
      host: "127.0.0.1",
      port,
    });
    sockets.add(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    const seen = describeAgentPeer(socket);
    const peer = seen.peerCN === null ? { peerCN: null, thumbprint: null, chain: seen.reason } : seen;
    const channel = new Channel(socket, scheduler, silentLogger);
    channel.send({ t: "hello", v: PROTOCOL_VERSION, agentId });
    const ack = await channel.expect("hello-ack", 5_000);
    if ("missing" in ack) throw new Error(`agentd did not answer hello: ${ack.reason}`);
    const session = new LiveSession(agentId, 1, ack, peer, channel, scheduler, KEEPALIVE, silentLogger);
    return {
      session,
      drop: () => {
        channel.close("dropped by the test", false);
        socket.destroy();
      },
    };
  }

  return { agentId, agentd, home, connect };
}

/**
 * The part of the control plane's Sessions exec uses, over sessions the test opens and drops.
 * Every frame that ended a command on them is kept in `results`, as agentd sent it.
 */
export class TestSessions implements ExecSessions {
  readonly results: (DoneMsg | ErrorMsg)[] = [];
  private readonly live = new Map<string, ExecSession>();
  private readonly listeners: ((s: ExecSession) => void)[] = [];

  get(agentId: string): ExecSession | undefined {
    return this.live.get(agentId);
  }

  onReady(listener: (s: ExecSession) => void): void {
    this.listeners.push(listener);
  }

  /** A session became ready (as Sessions does after register / welcome). */
  ready(session: LiveSession): void {
    const seen: ExecSession = {
      agentId: session.agentId,
      run: async (msg, on) => {
        const result = await session.run(msg, on);
        this.results.push(result);
        return result;
      },
      cancel: (id) => session.cancel(id),
    };
    this.live.set(session.agentId, seen);
    void session.closed.then(() => {
      if (this.live.get(session.agentId) === seen) this.live.delete(session.agentId);
    });
    for (const l of this.listeners) l(seen);
  }
}
