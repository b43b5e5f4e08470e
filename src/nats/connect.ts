import type { ConnectionOptions, NatsConnection } from "@nats-io/nats-core";
import {
  authFromEnv,
  hasIdentity,
  mergeAuth,
  type NatsAuth,
  type NatsRole,
  redactUrl,
  scrub,
  splitUrl,
} from "./auth.ts";
import { commandLineAuth } from "./command-line-auth.ts";
import { readAuthFile, seedOf } from "./credential-files.ts";
import { localAuthFor } from "./local-auth.ts";
import { readFramesFast } from "./msg-frames.ts";
import { credsAuthenticator, nkeyAuthenticator } from "./nkey-signer.ts";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

export function natsUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.NATS_URL?.trim() || DEFAULT_NATS_URL;
}

/** NATS did not answer at `url` within the timeout. The CLI maps it to exit code 3. */
export class NatsUnreachableError extends Error {
  override name = "NatsUnreachableError";
  /** The URL as it may be shown (no password or token). */
  readonly url: string;
  constructor(
    url: string,
    cause: unknown,
    /** What to do about it, when the thrower knows better than "start one with npm start". */
    readonly advice?: string,
  ) {
    const shown = redactUrl(url);
    super(`NATS is not reachable at ${shown}: ${scrub(String((cause as Error)?.message ?? cause), {})}`);
    this.url = shown;
  }
}

/** NATS answered but refused corral's credentials (or the lack of them). Exit code 3 too. */
export class NatsAuthError extends NatsUnreachableError {
  override name = "NatsAuthError";
  constructor(url: string, cause: unknown) {
    super(
      url,
      cause,
      "Give corral its NATS credentials: NATS_CREDS, NATS_NKEY, NATS_USER/NATS_PASSWORD or NATS_TOKEN " +
        "(or --nats-creds, --nats-nkey, …, or nats: in corral.yaml); see the README's Security section.",
    );
    this.message = `NATS at ${this.url} refused the connection: ${scrub(String((cause as Error)?.message ?? cause), {})}`;
  }
}

export interface ConnectOptions {
  name?: string;
  /** Give up on the first connection after this long (the CLI promises an answer within 3 s). */
  timeoutMs?: number;
  /** Long-running processes keep reconnecting; one-shot commands do not. */
  reconnect?: boolean;
  /** Credentials from corral.yaml; the URL's, the environment's and the command line's win. */
  auth?: NatsAuth;
  /** What this connection does: with no credentials given anywhere, `npm start`'s for this role. */
  role?: NatsRole;
}

/** Every source of credentials, in order of precedence (README "Security"). */
export function resolveAuth(url: string, opts: Pick<ConnectOptions, "auth" | "role"> = {}) {
  const { servers, auth: fromUrl } = splitUrl(url);
  let auth = mergeAuth(opts.auth, fromUrl, authFromEnv(), commandLineAuth());
  if (!hasIdentity(auth) && opts.role) auth = mergeAuth(localAuthFor(opts.role), auth);
  return { servers, auth };
}

function isAuthFailure(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: string };
  return (
    e?.name === "AuthorizationError" || /authori[sz]ation violation|authentication/i.test(e?.message ?? "")
  );
}

export async function connectNats(url: string, opts: ConnectOptions = {}): Promise<NatsConnection> {
  const timeoutMs = opts.timeoutMs ?? 2_000;
  const { servers, auth } = resolveAuth(url, opts);
  // Loaded here, not at the top: the CLI imports this module for natsUrl and the error class,
  // and `corral --help` must not pay for the NATS client.
  const nats = await import("../vendor/nats.ts");
  const options: ConnectionOptions = {
    servers,
    name: opts.name ?? "corral",
    timeout: timeoutMs,
    maxReconnectAttempts: opts.reconnect ? -1 : 0,
    reconnectTimeWait: 500,
  };
  if (auth.user) {
    options.user = auth.user;
    options.pass = auth.password ?? "";
  }
  if (auth.token) options.token = auth.token;
  // A file that cannot be read, or holds no valid key, throws NatsCredentialsError here, before
  // any connection.
  const authenticators = [];
  if (auth.nkey) authenticators.push(nkeyAuthenticator(seedOf(auth.nkey)));
  if (auth.creds) authenticators.push(credsAuthenticator(readAuthFile(auth.creds, "creds"), auth.creds));
  if (authenticators.length > 0) options.authenticator = authenticators;
  if (auth.tls) options.tls = { caFile: auth.tls.ca, certFile: auth.tls.cert, keyFile: auth.tls.key };
  let timer: NodeJS.Timeout | undefined;
  try {
    const attempt = nats.connect(options);
    // connect() has its own timeout, but a black-holed address can outlast it: race a hard limit.
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs + 250);
    });
    attempt.catch(() => {}); // the race may settle first; never leave this rejection unhandled
    const nc = await Promise.race([attempt, limit]);
    readFramesFast(nc);
    return nc;
  } catch (err) {
    // nats.js messages carry no credentials, but a TLS or file error may quote a value back.
    const cause = new Error(scrub(String((err as Error)?.message ?? err), auth));
    if (isAuthFailure(err)) throw new NatsAuthError(url, cause);
    throw new NatsUnreachableError(url, cause);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * True when something speaking NATS answers at `url` quickly — also when it refuses our
 * credentials: it is there (connecting for real then says why it refuses).
 */
export async function natsAnswers(url: string, timeoutMs = 1_000, role?: NatsRole): Promise<boolean> {
  try {
    const nc = await connectNats(url, { timeoutMs, name: "corral-probe", role });
    await nc.close();
    return true;
  } catch (err) {
    return err instanceof NatsAuthError;
  }
}
