import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { NATS_ROLES, type NatsRole } from "../src/nats/auth.ts";
import { connectNats, NatsAuthError } from "../src/nats/connect.ts";
import { ensureNats } from "../src/nats/ensure.ts";
import { CORRAL_NATS_CONF, ensureLocalUsers, localAuthFor, localSeedFile } from "../src/nats/local-auth.ts";
import { freePort } from "../src/nats/server.ts";
import { EventStore } from "../src/store/event-store.ts";
import { SNAPSHOT_BUCKET } from "../src/store/snapshots.ts";
import { bin, corral } from "./helpers/cli.ts";
import { portBlock, spawnDaemon, writeConfig } from "./helpers/daemon.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

/**
 * Item 2 of issue 7: corral's three NATS users (src/nats/corral-nats.conf) against a real
 * nats-server run with that file. The daemon does all it does with its user; a client or a
 * reader cannot append an event, change the stream or serve the API; no credentials, no entry.
 */

interface Secured {
  t: TestNats;
  dir: string;
  as(role: NatsRole): Promise<NatsConnection>;
}

async function securedNats(): Promise<Secured> {
  const dir = tempDir("perm-");
  const t = await startTestNats({ configFile: CORRAL_NATS_CONF, env: await ensureLocalUsers(dir) });
  return { t, dir, as: (role) => t.connect(`test-${role}`, localAuthFor(role, dir)) };
}

const violations = (t: TestNats) =>
  readFileSync(join(t.dir, "nats.log"), "utf8")
    .split("\n")
    .filter((l) => /violation/i.test(l));

/** `corral <args>` run in `cwd` (helpers/cli.ts runs it in the repo). */
function runIn(
  cwd: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      [bin, ...args],
      { cwd, env: { ...process.env, ...env } },
      (err, _out, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }),
    ),
  );
}

/** Resolves with the error `op` fails with; fails the test if it succeeds. */
async function failure(op: () => Promise<unknown>, what: string): Promise<Error> {
  try {
    await op();
  } catch (err) {
    return err as Error;
  }
  assert.fail(`${what} succeeded`);
}

/** The first asynchronous error the server sends this connection (a refused publish or subscribe). */
async function nextServerError(nc: NatsConnection): Promise<string> {
  for await (const s of nc.status()) if (s.type === "error") return String(s.error.message);
  return "closed";
}

describe("corral-nats.conf: three users with their permissions", () => {
  it("no credentials, or unknown ones: refused", async () => {
    const { t } = await securedNats();
    const err = await failure(() => connectNats(t.url, { name: "plain" }), "a plain connect");
    assert.ok(err instanceof NatsAuthError, String(err));
    const stranger = await failure(
      () => connectNats(t.url, { auth: { user: "corral", password: "corral" } }),
      "a guessed user",
    );
    assert.ok(stranger instanceof NatsAuthError, String(stranger));
  });

  it("the daemon works with its user; clients and readers with theirs; the server logs no violation", async () => {
    const { t, dir } = await securedNats();
    const config = writeConfig(join(dir, "daemon"), {
      instance: `perm-${process.pid}`,
      stateDir: join(dir, "state"),
      nats: { url: t.url, nkey: localSeedFile("daemon", dir) },
      pools: {
        p: { runtime: "process", min: 1, max: 2, warm: 1, ports: { range: portBlock(4), perAgent: 1 } },
      },
    });
    const daemonProcess = await spawnDaemon(config, t.url);
    const as = (role: NatsRole) => ["--nats-nkey", localSeedFile(role, dir)];
    const env = { NATS_URL: t.url };
    const acquired = await corral([...as("client"), "acquire", "p", "--json", "--timeout", "20s"], env);
    assert.equal(acquired.code, 0, acquired.stderr);
    const lease = JSON.parse(acquired.stdout) as { leaseId: string; agentId: string };
    const status = await corral([...as("client"), "status", "p", "--json"], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(lease.agentId));
    const tail = await corral([...as("reader"), "events", "tail", "-n", "50", "--json"], env);
    assert.equal(tail.code, 0, tail.stderr);
    assert.match(tail.stdout, /"AgentLeased"/);
    const world = await corral([...as("reader"), "worldview", "--json"], env);
    assert.equal(world.code, 0, world.stderr);
    const down = await corral([...as("client"), "down", "--config", config], env);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(violations(t), [], "everything corral did was allowed");
    const seeds = NATS_ROLES.map((role) => readFileSync(localSeedFile(role, dir), "utf8").trim());
    const outputs = [acquired, status, tail, world, down].flatMap((r) => [r.stdout, r.stderr]);
    for (const text of [...outputs, daemonProcess.logs.join("\n")])
      for (const seed of seeds) assert.ok(!text.includes(seed), "no nkey seed in any output or log");
  });

  it("a client or a reader cannot append an event, change the stream or a KV bucket, or serve the API", async () => {
    const s = await securedNats();
    const daemon = await s.as("daemon");
    const store = await EventStore.open(daemon); // the daemon creates the stream
    await jetstream(daemon).publish("corral.evt.pool.perm", "written by the daemon");
    await new Kvm(daemon).create(SNAPSHOT_BUCKET, { history: 1 });
    const lastSeq = async () => (await store.jsm.streams.info(store.stream)).state.last_seq;
    const before = await lastSeq();
    for (const role of ["client", "reader"] as const) {
      const nc = await s.as(role);
      const refused = (err: Error, what: string) =>
        assert.match(err.message, /permissions violation/i, `${role}: ${what}: ${err.message}`);
      refused(
        await failure(() => jetstream(nc).publish("corral.evt.pool.perm", "forged"), `${role} appends`),
        "a JetStream publish on corral.evt.>",
      );
      const plain = nextServerError(nc);
      nc.publish("corral.evt.agent.perm", "forged"); // no ack asked: the server says no all the same
      assert.match(await plain, /Permissions Violation for Publish to "corral.evt.agent.perm"/);
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      refused(await failure(() => jsm.streams.purge(store.stream), `${role} purges`), "a purge");
      refused(await failure(() => jsm.streams.deleteMessage(store.stream, 1), `${role} deletes`), "a delete");
      refused(
        await failure(
          () => jsm.streams.update(store.stream, { subjects: ["corral.evt.>", "x.>"] }),
          "update",
        ),
        "a stream update",
      );
      refused(
        await failure(
          () => nc.request(`$KV.${SNAPSHOT_BUCKET}.pool.perm`, "x", { timeout: 2_000 }),
          "kv put",
        ),
        "a snapshot put",
      );
      const serve = nextServerError(nc);
      nc.subscribe("corral.api.pool.perm.acquire");
      assert.match(await serve, /Permissions Violation for Subscription to "corral.api.pool.perm.acquire"/);
    }
    assert.equal(await lastSeq(), before, "the stream holds nothing new");
    assert.equal(await store.lastSeqOf({ kind: "agent", id: "perm" }), 0);
  });

  it("a reader cannot make the server write the stream either: a push consumer into corral.evt.> is refused", async () => {
    const s = await securedNats();
    const daemon = await s.as("daemon");
    const store = await EventStore.open(daemon);
    await jetstream(daemon).publish("corral.evt.pool.perm", "written by the daemon");
    const jsm = await jetstreamManager(await s.as("reader"));
    const err = await failure(
      () =>
        jsm.consumers.add(store.stream, {
          deliver_subject: "corral.evt.agent.loop",
          ack_policy: AckPolicy.None,
        }),
      "a push consumer delivering into the stream",
    );
    assert.match(err.message, /cycle/);
    assert.equal((await store.jsm.streams.info(store.stream)).state.last_seq, 1);
  });
});

describe("npm start's own nats-server", () => {
  it("runs with corral-nats.conf and credentials under .corral/ (0600): a plain client is refused, the client user cannot append", async () => {
    const home = tempDir("start-nats-");
    const dataDir = join(home, ".corral"); // where `npm start` run in `home` keeps its state
    const url = `nats://127.0.0.1:${await freePort()}`;
    const nats = await ensureNats({ url, dataDir, say: () => {} });
    onTeardown("the nats-server ensureNats started", () => nats.stop());
    assert.ok(nats.started, "a server of its own");
    assert.equal(statSync(join(dataDir, "nats-auth")).mode & 0o777, 0o700);
    for (const role of NATS_ROLES) {
      assert.equal(statSync(localSeedFile(role, dataDir)).mode & 0o777, 0o600, role);
      assert.match(readFileSync(localSeedFile(role, dataDir), "utf8"), /^SU[A-Z2-7]{56}$/, role);
    }
    const plain = await failure(() => connectNats(nats.url, { name: "plain" }), "a plain client");
    assert.ok(plain instanceof NatsAuthError, String(plain));
    const r = await corral(["events", "tail"], { NATS_URL: nats.url });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /refused the connection: Authorization Violation/);

    const daemon = await connectNats(nats.url, { auth: nats.authFor("daemon") });
    const client = await connectNats(nats.url, { auth: nats.authFor("client") });
    try {
      await EventStore.open(daemon);
      // Run from the directory `npm start` ran in, the CLI finds the key of its role by itself.
      const here = await runIn(home, ["events", "tail"], { NATS_URL: nats.url });
      assert.equal(here.code, 0, here.stderr);
      const err = await failure(() => jetstream(client).publish("corral.evt.pool.x", "forged"), "append");
      assert.match(err.message, /permissions violation/i);
      // The same credentials again next time: CLIs and daemons that found them go on working.
      assert.deepEqual(await ensureLocalUsers(dataDir), await ensureLocalUsers(dataDir));
    } finally {
      await Promise.all([daemon.close(), client.close()]);
    }
  });
});
