import { stripVTControlCharacters } from "node:util";
import { ApiError, type CorralClient, type PoolStatus } from "../api/client.ts";
import type { Palette } from "./colour.ts";
import { clock } from "./format.ts";
import { type Out, stdout } from "./output.ts";
import { formatStatus } from "./pool-format.ts";
import { apiErrorText, jsonOut, paletteFor } from "./pool-session.ts";

export interface StatusCliOptions {
  json: boolean;
  watch: boolean;
  /** Between refreshes with --watch. */
  intervalMs?: number;
}

async function fetchStatus(client: CorralClient, pool: string | undefined): Promise<PoolStatus[]> {
  return pool === undefined ? client.pools() : [await client.status(pool)];
}

function human(statuses: PoolStatus[], c: Palette, now: number): string {
  if (statuses.length === 0) return `${c.dim("no pools")}\n`;
  return statuses.map((s) => formatStatus(s, c, now)).join("\n");
}

/**
 * `corral status [pool]`: one pool, or every pool the daemon runs. With `--json`, one status
 * object per line (per pool, per refresh).
 */
export async function status(
  client: CorralClient,
  pool: string | undefined,
  opts: StatusCliOptions,
  out: Out,
  signal?: AbortSignal,
): Promise<void> {
  if (!opts.watch) {
    const statuses = await fetchStatus(client, pool);
    if (opts.json) for (const s of statuses) jsonOut(out, s);
    else out.write(human(statuses, paletteFor(out), Date.now()));
    return;
  }
  await watch(client, pool, opts, out, signal);
}

/** Escape codes take no columns. */
const visible = (line: string) => stripVTControlCharacters(line).length;

/**
 * Refreshes until `signal` aborts. On a terminal each frame replaces the one before (cursor up
 * over the rows it took, wrapped lines included, then clear); elsewhere frames follow each other.
 * An API error (daemon restarting, NATS reconnecting) is shown as the frame, not fatal.
 */
async function watch(
  client: CorralClient,
  pool: string | undefined,
  opts: StatusCliOptions,
  out: Out,
  signal?: AbortSignal,
): Promise<void> {
  const c = paletteFor(out);
  const tty = out === stdout && process.stdout.isTTY === true && !opts.json;
  let rowsDrawn = 0;
  while (!signal?.aborted) {
    const now = Date.now();
    let frame: string;
    try {
      // Ctrl-C should not wait for a slow reply: give up on it when the signal aborts.
      const statuses = await untilAborted(fetchStatus(client, pool), signal);
      if (statuses === undefined) break;
      if (opts.json) {
        for (const s of statuses) jsonOut(out, s);
        frame = "";
      } else {
        frame = human(statuses, c, now);
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (opts.json) jsonOut(out, { error: { code: err.code, message: err.message } });
      frame = opts.json ? "" : `${c.red(apiErrorText(err))}\n`;
    }
    if (signal?.aborted) break;
    if (!opts.json) {
      const text = `${c.dim(`${clock(now)}  every ${(opts.intervalMs ?? 1_000) / 1_000}s, Ctrl-C to stop`)}\n${frame}`;
      if (tty) {
        const columns = process.stdout.columns || 80;
        // Cursor up cannot reach rows scrolled off the top: then clear the screen instead.
        const fits = rowsDrawn < (process.stdout.rows || 24);
        const erase = rowsDrawn === 0 ? "" : fits ? `\x1b[${rowsDrawn}F\x1b[0J` : "\x1b[H\x1b[2J";
        out.write(`${erase}${text}`);
        rowsDrawn = text
          .trimEnd()
          .split("\n")
          .reduce((n, l) => n + Math.max(1, Math.ceil(visible(l) / columns)), 0);
      } else {
        out.write(`${text}\n`);
      }
    }
    await sleep(opts.intervalMs ?? 1_000, signal);
  }
}

function untilAborted<T>(p: Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
  if (!signal) return p;
  return new Promise((resolve, reject) => {
    const abort = () => resolve(undefined);
    signal.addEventListener("abort", abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
