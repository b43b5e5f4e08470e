import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { collectDefaultMetrics } from "prom-client";
import type { ControlPlane } from "../cp/control-plane.ts";
import type { MetricsAddress } from "./address.ts";
import { CorralMetrics } from "./definitions.ts";
import { eventMetrics } from "./events.ts";
import { refreshGauges, type ScrapeSources } from "./scrape.ts";
import { timeCalls } from "./timing.ts";

export interface MetricsServer {
  /** e.g. http://127.0.0.1:9464/metrics (the port the server got, when 0 was asked for). */
  readonly url: string;
  readonly metrics: CorralMetrics;
  /** Follows the control plane from before its boot: its stored events, appends and acquires. */
  follow(cp: ControlPlane): void;
  /**
   * Starts answering scrapes, once the daemon is up. `worldviewSeq`: the stream sequence its
   * worldview has folded up to, without catching up (the difference is the projection lag).
   */
  serve(worldviewSeq: () => number): void;
  close(): Promise<void>;
}

/**
 * `corral up --metrics <addr>`: Prometheus text on GET /metrics. Listens first, so an address in
 * use fails `corral up` before anything starts; until `serve`, a scrape answers 503. Counters
 * and histograms follow the events the daemon stores and its appends and acquires; gauges are
 * read at each scrape.
 */
export async function openMetrics(address: MetricsAddress, log: Logger): Promise<MetricsServer> {
  const m = new CorralMetrics();
  collectDefaultMetrics({ register: m.registry });
  let src: ScrapeSources | undefined;
  let cp: ControlPlane | undefined;
  const undo: (() => void)[] = [];
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics") return void res.writeHead(404).end("not found: try /metrics\n");
    if (req.method !== "GET" && req.method !== "HEAD") {
      return void res.writeHead(405, { allow: "GET, HEAD" }).end("GET /metrics\n");
    }
    if (!src) return void res.writeHead(503, { "retry-after": "1" }).end("corral is starting\n");
    refreshGauges(m, src)
      .then(() => m.registry.metrics())
      .then((text) => res.writeHead(200, { "content-type": m.registry.contentType }).end(text))
      .catch((err: unknown) => {
        log.warn({ err }, "metrics scrape failed");
        res.writeHead(500).end(`scrape failed: ${(err as Error).message}\n`);
      });
  });
  try {
    await listen(server, address);
  } catch (err) {
    const { host, port } = address;
    throw new Error(`metrics: cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
  }
  const { port } = server.address() as AddressInfo;
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  const url = `http://${host}:${port}/metrics`;
  log.info({ url }, "metrics");
  return {
    url,
    metrics: m,
    follow(followed) {
      cp = followed;
      undo.push(followed.host.onChange(eventMetrics(m)), timeCalls(followed, m));
    },
    serve(worldviewSeq) {
      if (!cp) throw new Error("metrics: serve() before follow()");
      src = { cp, worldviewSeq };
    },
    close: async () => {
      for (const u of undo.splice(0)) u();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function listen(server: Server, { host, port }: MetricsAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
