import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { silentLogger } from "../src/log.ts";
import { openMetrics } from "../src/metrics/server.ts";

/* The /metrics server on its own: what it answers before the daemon is up, and a port in use. */

describe("the metrics server", () => {
  it("listens before the control plane exists and answers 503 until the daemon serves", async (t) => {
    const m = await openMetrics({ host: "127.0.0.1", port: 0 }, silentLogger);
    t.after(() => m.close());
    assert.match(m.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const res = await fetch(m.url);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "1");
    assert.equal(await res.text(), "corral is starting\n");
    assert.throws(() => m.serve(() => 0), /serve\(\) before follow\(\)/);
  });

  it("an address in use fails at once, naming it", async (t) => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
    t.after(() => new Promise<void>((r) => taken.close(() => r())));
    const { port } = taken.address() as { port: number };
    await assert.rejects(
      openMetrics({ host: "127.0.0.1", port }, silentLogger),
      new RegExp(`^Error: metrics: cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`),
    );
  });

  it("closes: the port is free again", async () => {
    const m = await openMetrics({ host: "127.0.0.1", port: 0 }, silentLogger);
    const port = Number(new URL(m.url).port);
    await m.close();
    const again = await openMetrics({ host: "127.0.0.1", port }, silentLogger);
    await again.close();
  });
});
