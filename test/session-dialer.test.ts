import assert from "node:assert/strict";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { before, describe, it } from "node:test";
import { backoffSchedule } from "../machines/backoff.ts";
import type { AgentSession } from "../src/cp/session/agent-session.ts";
import { SessionLostError } from "../src/cp/session/errors.ts";
import { readySessions, type SessionWorld, sessionWorld, until } from "./helpers/session-world.ts";

/**
 * The dialer against real mTLS on loopback, a real agentd engine and a real nats-server with the
 * actor host storing every fact: dedup, backoff, breaks and re-dials, the fd-leak ceiling, and an
 * intentional close that records nothing.
 */

const session = (id: string) => ({ kind: "session", id }) as const;
const agent = (id: string) => ({ kind: "agent", id }) as const;

describe("session dialer", () => {
  let w: SessionWorld;
  before(async () => {
    w = await sessionWorld();
  });

  it("dials, records SessionConnecting and SessionConnected with the peer seen, registers, and runs a command", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    const sessions = w.sessions();
    const ready = readySessions(sessions);
    sessions.dial(id, 1);
    await until("ready", () => ready.length === 1);

    const events = await w.eventsOf(session(id));
    assert.deepEqual(
      events.map((e) => e.type),
      ["SessionConnecting", "SessionConnected"],
    );
    const connected = events[1]!.data;
    assert.equal(connected.peerCN, `${id}.p.agent.corral`);
    assert.equal(connected.chain, "ok");
    assert.equal(connected.attempts, 1);
    assert.match(String(connected.thumbprint), /^[0-9a-f]{64}$/);
    const registered = (await w.eventsOf(agent(id))).find((e) => e.type === "AgentRegistered");
    assert.equal(registered?.data.thumbprint, connected.thumbprint);
    assert.equal(w.registry.registrationOf(id)?.state, "registered");
    assert.equal((await w.host.get(agent(id))).value, "initializing");
    assert.deepEqual(
      peer.received[0]?.map((m) => m.t),
      ["hello", "register-required", "welcome"],
    );

    const s = sessions.get(id);
    assert.ok(s);
    const outputs: string[] = [];
    const done = await s.run(
      { t: "exec", id: "cmd-1", argv: [process.execPath, "-e", "console.log(6 * 7)"] },
      { output: (o) => outputs.push(Buffer.from(o.data).toString()) },
    );
    assert.equal(done.t, "done");
    assert.equal(done.t === "done" && done.exitCode, 0);
    assert.match(outputs.join(""), /42/);
    await sessions.close();
  });

  it("10 concurrent dials make one connection: the first is parked until all ten were made", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    let release!: () => void;
    const parked = new Promise<void>((r) => {
      release = r;
    });
    let resolves = 0;
    const sessions = w.sessions({
      resolve: async (agentId) => {
        resolves++;
        await parked;
        return w.targets.get(agentId) ?? null;
      },
    });
    let ready = 0;
    sessions.onReady(() => {
      ready++;
    });
    for (let i = 0; i < 10; i++) sessions.dial(id, 1);
    assert.equal(resolves, 1, "only the first dial got as far as resolving");
    release();
    await until("ready", () => ready === 1);
    for (let i = 0; i < 10; i++) sessions.dial(id, 1); // while connected, too
    await w.host.idle();
    assert.equal(peer.received.length, 1);
    assert.deepEqual(await w.typesOf(session(id)), ["SessionConnecting", "SessionConnected"]);
    assert.equal(ready, 1);
    await sessions.close();
  });

  it("a session agentd drops is recorded as broken and dialled again; the same certificate is welcomed without a new event", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    const sessions = w.sessions();
    const ready = readySessions(sessions);
    sessions.dial(id, 1);
    await until("first ready", () => ready.length === 1);
    const lost = ready[0]!.run({
      t: "exec",
      id: "sleeper",
      argv: [process.execPath, "-e", "setTimeout(() => {}, 60000)"],
    });
    await until("exec sent", () => peer.received[0]!.some((m) => m.t === "exec"));
    peer.dropConnections();
    await assert.rejects(lost, SessionLostError);
    await until("second ready", () => ready.length === 2);

    const types = await w.typesOf(session(id));
    assert.deepEqual(types, [
      "SessionConnecting",
      "SessionConnected",
      "SessionBroken",
      "SessionConnecting",
      "SessionConnected",
    ]);
    const broken = (await w.eventsOf(session(id)))[2]!.data;
    assert.equal(broken.reason, "peer_closed");
    assert.equal((await w.typesOf(agent(id))).filter((t) => t === "AgentRegistered").length, 1);
    assert.deepEqual(
      peer.received[1]?.map((m) => m.t),
      ["hello", "welcome"],
    );
    assert.equal(sessions.get(id), ready[1]);
    await sessions.close();
  });

  it("an intentional close records nothing and does not re-dial", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    const sessions = w.sessions();
    let ready: AgentSession | undefined;
    sessions.onReady((s) => {
      ready = s;
    });
    sessions.dial(id, 1);
    await until("ready", () => ready !== undefined);
    await sessions.drop(id);
    assert.equal(await ready!.closed, "closed");
    await new Promise((r) => setTimeout(r, 100));
    await w.host.idle();
    assert.deepEqual(await w.typesOf(session(id)), ["SessionConnecting", "SessionConnected"]);
    assert.equal(peer.received.length, 1);
    assert.equal(sessions.get(id), undefined);
    await sessions.close();
  });

  it("gives up after the attempts its seed's schedule allows: one SessionFailed gave_up for ten dials", async () => {
    const id = await w.newAgent();
    w.targets.set(id, { address: "127.0.0.1:1", labels: { poolId: "p", agentId: id, generation: 1 } });
    const sessions = w.sessions({ seed: () => 1234 });
    for (let i = 0; i < 10; i++) sessions.dial(id, 1); // one cycle, so at most one failure
    await until("failed", async () => (await w.typesOf(session(id))).includes("SessionFailed"));
    await w.host.idle();
    const events = await w.eventsOf(session(id));
    assert.equal(events.length, 2);
    assert.deepEqual(events[0]?.data, { generation: 1, address: "127.0.0.1:1", seed: 1234 });
    const expectedAttempts = backoffSchedule(1234, { startMs: 5, capMs: 20, giveUpMs: 200 }).length + 1;
    assert.deepEqual(events[1]?.data, { generation: 1, reason: "gave_up", attempts: expectedAttempts });
    await sessions.close();
  });

  it("after 5 socket closes failing in a row: SessionFailed fd-leak-ceiling; a good close resets the count", async () => {
    const id = await w.newAgent();
    w.targets.set(id, { address: "127.0.0.1:1", labels: { poolId: "p", agentId: id, generation: 1 } });
    // Fails four times, succeeds once, then fails for good: the ceiling is reached at attempt 10.
    const outcomes = [false, false, false, false, true];
    let closes = 0;
    const sessions = w.sessions({
      options: { backoff: { startMs: 2, capMs: 4, giveUpMs: 60_000 }, redialDelayMs: 10 },
      closeSocket: async (socket) => {
        socket.destroy();
        if (!(outcomes[closes++] ?? false)) throw new Error("close failed");
      },
    });
    sessions.dial(id, 1);
    await until("failed", async () => (await w.typesOf(session(id))).includes("SessionFailed"));
    const failed = (await w.eventsOf(session(id)))[1]?.data;
    assert.deepEqual(failed, { generation: 1, reason: "fd-leak-ceiling", attempts: 10 });
    assert.equal(closes, 10);
    await sessions.close();
  });

  it("a dial for a newer generation ends the older session without a break; an older generation is ignored", async () => {
    const id = await w.newAgent();
    await w.peerFor(id);
    const sessions = w.sessions();
    let ready = 0;
    sessions.onReady(() => {
      ready++;
    });
    sessions.dial(id, 1);
    await until("ready", () => ready === 1);
    sessions.dial(id, 2);
    await until("generation 2 connected", async () => (await w.typesOf(session(id))).length === 4);
    sessions.dial(id, 1);
    await new Promise((r) => setTimeout(r, 100));
    await w.host.idle();
    const events = await w.eventsOf(session(id));
    assert.deepEqual(
      events.map((e) => [e.type, e.data.generation]),
      [
        ["SessionConnecting", 1],
        ["SessionConnected", 1],
        ["SessionConnecting", 2],
        ["SessionConnected", 2],
      ],
    );
    await sessions.close();
  });

  it("ping/pong keeps a session up; one whose pong does not come is broken (keepalive_timeout) and dialled again", async () => {
    const id = await w.newAgent();
    const peer = await w.peerFor(id);
    const sessions = w.sessions({
      options: {
        keepalive: { pingMs: 20, pongTimeoutMs: 300 },
        redialDelayMs: 10,
        handshakeTimeoutMs: 5_000,
      },
    });
    let ready = 0;
    sessions.onReady(() => {
      ready++;
    });
    sessions.dial(id, 1);
    await until("ready", () => ready === 1);
    await until("pings answered", () => (peer.received[0]?.filter((m) => m.t === "ping").length ?? 0) >= 5);
    assert.deepEqual(await w.typesOf(session(id)), ["SessionConnecting", "SessionConnected"]);
    peer.sockets[0]!.pause(); // agentd stops reading: no more pongs
    await until("re-dialled", () => ready === 2);
    const broken = (await w.eventsOf(session(id))).find((e) => e.type === "SessionBroken");
    assert.equal(broken?.data.reason, "keepalive_timeout");
    await sessions.close();
  });

  it("closing while an attempt hangs in its handshake cuts it at once and records no failure", async (t) => {
    const id = await w.newAgent();
    const held: Socket[] = [];
    const blackHole = createServer((socket) => held.push(socket)); // accepts, never speaks TLS
    await new Promise<void>((r) => blackHole.listen(0, "127.0.0.1", r));
    t.after(() => {
      for (const s of held) s.destroy();
      blackHole.close();
    });
    const port = (blackHole.address() as AddressInfo).port;
    w.targets.set(id, { address: `127.0.0.1:${port}`, labels: { poolId: "p", agentId: id, generation: 1 } });
    const sessions = w.sessions({ options: { handshakeTimeoutMs: 120_000 } });
    sessions.dial(id, 1);
    await until("the attempt reached the server", () => held.length === 1);
    const started = Date.now();
    await sessions.close();
    assert.ok(Date.now() - started < 10_000, "close waited for the handshake timeout");
    await w.host.idle();
    assert.deepEqual(await w.typesOf(session(id)), ["SessionConnecting"]);
  });
});
