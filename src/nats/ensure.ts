import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import type { Logger } from "../log.ts";
import { type NatsAuth, type NatsRole, redactUrl } from "./auth.ts";
import { NatsUnreachableError, natsAnswers, natsUrl } from "./connect.ts";
import { type InstallHost, manualAdvice, obtainNatsServer } from "./install.ts";
import { CORRAL_NATS_CONF, ensureLocalUsers, localAuthFor } from "./local-auth.ts";
import { freePort, NatsServer } from "./server.ts";

export interface EnsureNatsOptions {
  /** Where to look first; default NATS_URL or nats://127.0.0.1:4222. */
  url?: string;
  /** Local state; the server's JetStream store goes to <dataDir>/nats, its log to <dataDir>/nats.log. */
  dataDir?: string;
  log?: Logger;
  /** How nats-server may be installed when it is missing; default: this machine. */
  host?: InstallHost;
  /** Where the one line announcing an install goes; default stderr. */
  say?: (line: string) => void;
}

export interface EnsuredNats {
  url: string;
  /** Set when we started the server ourselves. */
  started?: NatsServer;
  /** The JetStream store directory of the server we started. */
  storeDir?: string;
  /**
   * The credentials of `role` on the server we started (it runs with corral-nats.conf: each role
   * its own nkey, kept in <dataDir>/nats-auth/); undefined for a server found running.
   */
  authFor(role: NatsRole): NatsAuth | undefined;
  /** Stops the server if we started it (its data stays); otherwise does nothing. */
  stop(): Promise<void>;
}

/** Only start a server of our own when the URL names this machine: a remote URL that is down is an error. */
function loopbackPort(url: string): number | undefined {
  if (url.includes(",")) return undefined;
  try {
    const u = new URL(url.includes("://") ? url : `nats://${url}`);
    const host = u.hostname.replace(/^\[|\]$/g, "");
    if (!["127.0.0.1", "localhost", "::1", "0.0.0.0"].includes(host)) return undefined;
    return u.port ? Number(u.port) : 4222;
  } catch {
    return undefined;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const srv = createServer();
    srv.once("error", () => done(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => done(true)));
  });
}

/**
 * Finds NATS for `corral start`: whatever answers at the URL, else a `nats-server -js` of our own
 * (preferring the URL's port, normally 4222, so other terminals find it with no configuration),
 * installing nats-server first when it is missing and this machine lets us (see install.ts).
 * Throws NatsUnreachableError — with the commands to run when nats-server is missing — otherwise.
 */
export async function ensureNats(opts: EnsureNatsOptions = {}): Promise<EnsuredNats> {
  const url = opts.url ?? natsUrl();
  const log = opts.log;
  const dataDir = resolve(opts.dataDir ?? ".corral");
  if (await natsAnswers(url, 1_000, "daemon")) {
    const shown = redactUrl(url);
    log?.info({ url: shown }, "using the NATS server at %s", shown);
    return { url, authFor: () => undefined, stop: async () => {} };
  }
  const preferred = loopbackPort(url);
  if (preferred === undefined) {
    throw new NatsUnreachableError(
      url,
      new Error("nothing answers there (corral only starts a server of its own on this machine)"),
      `Check that it is up, or unset NATS_URL / --nats to let corral start one here.`,
    );
  }
  const obtained = await obtainNatsServer(opts.host, opts.say);
  if ("missing" in obtained) {
    throw new NatsUnreachableError(
      url,
      new Error(`nothing answers there and ${obtained.missing}.`),
      manualAdvice(obtained.commands),
    );
  }
  mkdirSync(dataDir, { recursive: true });
  const port = (await portFree(preferred)) ? preferred : await freePort();
  const logFile = join(dataDir, "nats.log");
  const storeDir = join(dataDir, "nats");
  let server: NatsServer;
  try {
    // ownGroup: Ctrl-C in the terminal reaches corral alone, which stops this server last.
    // With corral's three users only (README "Security"): no connection without credentials.
    const env = await ensureLocalUsers(dataDir);
    server = await NatsServer.start({
      port,
      storeDir,
      logFile,
      binary: obtained.binary,
      ownGroup: true,
      configFile: CORRAL_NATS_CONF,
      env,
    });
  } catch (err) {
    throw new NatsUnreachableError(
      url,
      new Error(`could not start nats-server (see ${logFile}): ${(err as Error).message}`),
    );
  }
  log?.info({ url: server.url, storeDir, logFile }, "started nats-server on port %d", port);
  return {
    url: server.url,
    started: server,
    storeDir,
    authFor: (role) => localAuthFor(role, dataDir),
    stop: async () => {
      await server.stop();
      log?.info({ storeDir }, "stopped nats-server; its data stays in %s", storeDir);
    },
  };
}
