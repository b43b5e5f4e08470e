import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../../src/nats/connect.ts";
import { NatsServer } from "../../src/nats/server.ts";
import { onTeardown, tempDir } from "./teardown.ts";

/** A nats-server of the test's own: free loopback port, temp store, stopped by the teardown. */
export interface TestNats {
  server: NatsServer;
  url: string;
  dir: string;
  connect(name?: string): Promise<NatsConnection>;
  /** Closes the connections and stops the server now rather than at the end of the file. */
  cleanup(): Promise<void>;
}

export async function startTestNats(): Promise<TestNats> {
  const dir = tempDir("nats-");
  const server = new NatsServer({ storeDir: join(dir, "store"), logFile: join(dir, "nats.log") });
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
    async connect(name = "test") {
      const nc = await connectNats(server.url, { name, reconnect: true });
      conns.push(nc);
      return nc;
    },
    cleanup,
  };
}
