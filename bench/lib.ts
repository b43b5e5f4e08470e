import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { connectNats } from "../src/nats/connect.ts";
import { NatsServer } from "../src/nats/server.ts";

/** Small helpers shared by the benches: a private nats-server, timing, heap sampling, output. */

export interface BenchNats {
  server: NatsServer;
  /** corral's connection (src/nats/connect.ts: its frame reader among other things). */
  nc: NatsConnection;
  /**
   * The official client as a user has it, nothing of corral's: what the baselines a user would
   * otherwise use (a plain subscriber, `js.publish`) run on.
   */
  plain: NatsConnection;
  /** Closes the connection, stops the server and removes its store. */
  stop(): Promise<void>;
}

/** A nats-server of the bench's own on a free port, with a temporary file store. */
export async function startBenchNats(name: string): Promise<BenchNats> {
  const dir = mkdtempSync(join(tmpdir(), `corral-bench-${name}-`));
  const server = await NatsServer.start({ storeDir: join(dir, "store") });
  const nc = await connectNats(server.url, { name: `bench-${name}` });
  const plain = await connect({ servers: server.url, name: `bench-${name}-plain` });
  return {
    server,
    nc,
    plain,
    async stop() {
      await plain.close();
      await nc.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

export const perSecond = (count: number, ms: number) => (count / ms) * 1000;
export const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
export const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);

/** "ratio 2.70x (target >= 2x)", flagged when short of the target. */
export function ratio(value: number, baseline: number, target: number): string {
  const r = value / baseline;
  return `ratio ${r.toFixed(2)}x (target >= ${target}x${r < target ? ", SHORT" : ""})`;
}

/**
 * The cost of event marks from paired runs (each marked run next to an unmarked one, their order
 * alternating): the median of the per-pair costs, with their range. On this noisy machine the
 * best of each side can come from different moments; a pair shares its moment.
 */
export function markCost(costs: readonly number[]): string {
  const sorted = [...costs].sort((a, b) => a - b);
  const mid = median(costs);
  const range = `${(sorted[0] as number).toFixed(1)}…${(sorted[sorted.length - 1] as number).toFixed(1)}%`;
  return `cost ${mid.toFixed(1)}% (median of ${costs.length} pairs, range ${range}; target <= 5%${mid > 5 ? ", OVER" : ""})`;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

let gcFn: (() => void) | undefined;
/** A full GC, for a clean heap baseline, whether or not node ran with --expose-gc. */
export function collectGarbage(): void {
  if (!gcFn) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) gcFn = g;
    else {
      setFlagsFromString("--expose-gc");
      gcFn = runInNewContext("gc") as () => void;
    }
  }
  gcFn();
}

/** Samples heapUsed on a timer (it fires whenever the measured code awaits) and keeps the peak. */
export function heapPeak(everyMs = 5): { stop(): number } {
  let peak = process.memoryUsage().heapUsed;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage().heapUsed);
    },
  };
}
