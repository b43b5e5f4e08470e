import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NatsAuth } from "../../src/nats/auth.ts";
import { connectNats } from "../../src/nats/connect.ts";
import { NatsServer } from "../../src/nats/server.ts";
import { EventKey } from "../../src/store/event-mark.ts";
import { bindIntegrity } from "../../src/store/integrity.ts";
import { onTeardown, tempDir } from "./teardown.ts";

/** A nats-server of the test's own: free loopback port, temp store, stopped by the teardown. */
export interface TestNats {
  server: NatsServer;
  url: string;
  dir: string;
  connect(name?: string, auth?: NatsAuth): Promise<NatsConnection>;
  /** Closes the connections and stops the server now rather than at the end of the file. */
  cleanup(): Promise<void>;
}

export interface TestNatsOptions {
  /** A config file for the server, or its text (written to <dir>/nats.conf). */
  configFile?: string;
  config?: string;
  /** The server's environment on top of ours (a config file reads `$NAME` from it). */
  env?: Record<string, string>;
}

export async function startTestNats(opts: TestNatsOptions = {}): Promise<TestNats> {
  const dir = tempDir("nats-");
  let configFile = opts.configFile;
  if (opts.config !== undefined) {
    configFile = join(dir, "nats.conf");
    writeFileSync(configFile, opts.config, { mode: 0o600 });
  }
  const server = new NatsServer({
    storeDir: join(dir, "store"),
    logFile: join(dir, "nats.log"),
    configFile,
    env: opts.env,
  });
  const conns: NatsConnection[] = [];
  const cleanup = onTeardown("test nats-server", async () => {
    await Promise.allSettled(conns.map((c) => (c.isClosed() ? undefined : c.close())));
    await server.stop();
  });
  await server.start();
  return {
    server,
    get url() {
      return server.url;
    },
    dir,
    async connect(name = "test", auth?: NatsAuth) {
      const nc = await connectNats(server.url, { name, reconnect: true, auth });
      conns.push(nc);
      return nc;
    },
    cleanup,
  };
}

/**
 * For a describe block: its own nats-server, and a connection on which every store marks what it
 * appends with a fresh writer key, as the daemon's does (src/store/integrity.ts). Read `t` and `nc`
 * inside tests (they are set by the block's `before`).
 */
export function markedTestNats(): { readonly t: TestNats; readonly nc: NatsConnection } {
  let t: TestNats | undefined;
  let nc: NatsConnection | undefined;
  before(async () => {
    t = await startTestNats();
    nc = await t.connect();
    bindIntegrity(nc, { key: EventKey.generate() });
  });
  after(() => t?.cleanup());
  return {
    get t() {
      if (!t) throw new Error("markedTestNats: read inside a test, after `before`");
      return t;
    },
    get nc() {
      if (!nc) throw new Error("markedTestNats: read inside a test, after `before`");
      return nc;
    },
  };
}
