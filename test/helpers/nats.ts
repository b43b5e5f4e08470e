import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../../src/nats/connect.ts";
import { NatsServer } from "../../src/nats/server.ts";

/** A nats-server of the test's own: free loopback port, temp store, removed at the end. */
export interface TestNats {
  server: NatsServer;
  url: string;
  dir: string;
  connect(name?: string): Promise<NatsConnection>;
  cleanup(): Promise<void>;
}

export async function startTestNats(): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), "corral-test-nats-"));
  const server = await NatsServer.start({ storeDir: join(dir, "store"), logFile: join(dir, "nats.log") });
  const conns: NatsConnection[] = [];
  return {
    server,
    get url() {
      return server.url;
    },
    dir,
    async connect(name = "test") {
      const nc = await connectNats(server.url, { name, reconnect: true });
      conns.push(nc);
      return nc;
    },
    async cleanup() {
      await Promise.allSettled(conns.map((c) => (c.isClosed() ? undefined : c.close())));
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
