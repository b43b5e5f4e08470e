import { relative } from "node:path";
import { runDemo } from "../demo/demo.ts";
import type { Logger } from "../log.ts";
import { redactUrl } from "../nats/auth.ts";
import { ensureNats } from "../nats/ensure.ts";
import { loadOrCreateEventKey } from "../store/key-file.ts";
import { tail } from "./events-tail.ts";
import type { Out } from "./output.ts";
import { recordPrinter } from "./output.ts";
import { withStore } from "./session.ts";

export interface StartOptions {
  url?: string;
  dataDir?: string;
  out: Out;
  log: Logger;
}

/**
 * `corral start` (what `npm start` runs): find or start NATS, run the demo through the actor host,
 * show the last events it wrote, and stop the server again if we started it (its data stays).
 */
export async function start(opts: StartOptions): Promise<void> {
  const { out, log } = opts;
  const nats = await ensureNats({ url: opts.url, dataDir: opts.dataDir, log });
  // Ctrl-C: stop our nats-server cleanly (JetStream flushes its store) rather than orphan it.
  const onSignal = () => {
    void nats.stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    // The demo is a writer: it marks with the key kept in the data dir, and the tail checks with it.
    const integrity = { key: loadOrCreateEventKey(opts.dataDir ?? ".corral").key };
    await runDemo({ natsUrl: nats.url, natsAuth: nats.authFor("daemon"), integrity, log });
    out.write("\n");
    await withStore({ url: nats.url, auth: nats.authFor("reader"), integrity }, (store) =>
      tail(store, { last: 30 }, recordPrinter(out, false)),
    );
    out.write("\n");
    const next = "next: npx corral events tail --follow   ·   npx corral worldview";
    if (nats.started && nats.storeDir) {
      const rel = relative(process.cwd(), nats.storeDir);
      const dir = rel && !rel.startsWith("..") ? rel : nats.storeDir;
      const port = nats.started.port === 4222 ? "" : ` -p ${nats.started.port}`;
      out.write(`${next}   (NATS is stopped now; run it again with: nats-server -js -sd ${dir}${port})\n`);
    } else {
      out.write(`${next}   (NATS at ${redactUrl(nats.url)})\n`);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await nats.stop();
  }
}
