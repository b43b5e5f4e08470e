import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import type { Agentd } from "../../src/agentd/agentd.ts";
import { type DoneMsg, type ErrorMsg, type FromAgent, PROTOCOL_VERSION } from "../../src/agentd/protocol.ts";
import type { InitSession } from "../../src/cp/init/executor.ts";
import { AgentdChannel } from "./agentd-channel.ts";

/**
 * A real agentd engine (src/agentd/agentd.ts) served over plain loopback TCP, and the control
 * plane's end of one connection as an InitSession: hello, hello-ack, then commands multiplexed by
 * id. TLS and registration are the session layer's (src/cp/session/); the init plan needs neither.
 */
export class PlainAgentd {
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly agentd: Agentd,
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async serve(agentd: Agentd): Promise<PlainAgentd> {
    const server = createServer((s) => agentd.handle(s));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no TCP address");
    return new PlainAgentd(agentd, server, address.port);
  }

  /** A new session for `generation`; `drop()` ends it the way a lost connection would. */
  async session(
    agentId: string,
    generation: number,
  ): Promise<InitSession & { sent: string[]; drop(): void }> {
    const socket = connect(this.port, "127.0.0.1");
    this.sockets.add(socket);
    await once(socket, "connect");
    const channel = new AgentdChannel(socket);
    const pending = new Map<string, { resolve(m: DoneMsg | ErrorMsg): void; reject(e: Error): void }>();
    const hello = new Promise<Extract<FromAgent, { t: "hello-ack" }>>((resolve) => {
      channel.onMessage((m) => {
        if (m.t === "hello-ack") resolve(m);
        if (m.t === "done" || m.t === "error") {
          pending.get(m.id)?.resolve(m);
          pending.delete(m.id);
        }
      });
    });
    const closed = channel.closed.then(({ reason }) => {
      for (const p of pending.values()) p.reject(new Error("the session ended"));
      pending.clear();
      return reason ?? "closed";
    });
    channel.send({ t: "hello", v: PROTOCOL_VERSION, agentId });
    const ack = await hello;
    const sent: string[] = [];
    return {
      agentId,
      generation,
      hello: ack,
      sent,
      closed,
      run(msg) {
        sent.push(msg.t === "op" ? msg.op : msg.t);
        return new Promise((resolve, reject) => {
          pending.set(msg.id, { resolve, reject });
          channel.send(msg);
        });
      },
      cancel: (id) => channel.send({ t: "cancel", id }),
      drop: () => channel.close(),
    };
  }

  private closing: Promise<void> | undefined;

  /** Stops agentd (its commands and the agent's command) and the listener; again, does nothing more. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const s of this.sockets) s.destroy();
      await this.agentd.close();
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
    })();
    return this.closing;
  }
}
