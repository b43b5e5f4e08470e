/**
 * How corral authenticates to NATS, gathered from corral.yaml, the URL, the environment and the
 * command line (README "Security"). Nothing here imports the NATS client (the CLI stays fast), and
 * no secret held here is ever printed: URLs are shown through `redactUrl`.
 */

export interface NatsTls {
  /** CA certificate (PEM) to check the server against. */
  ca?: string;
  /** Client certificate and its key (PEM), when the server asks for one. */
  cert?: string;
  key?: string;
}

export interface NatsAuth {
  user?: string;
  password?: string;
  token?: string;
  /** An nkey seed (`SU…`), or a file holding one. */
  nkey?: string;
  /** A `.creds` file (user JWT and its seed). */
  creds?: string;
  tls?: NatsTls;
}

/** Which of corral's NATS users a connection acts as (README "Security"). */
export type NatsRole = "daemon" | "client" | "reader";
export const NATS_ROLES: readonly NatsRole[] = ["daemon", "client", "reader"];

/** The environment variables read, each with the field it fills. */
export const AUTH_ENV = {
  NATS_USER: "user",
  NATS_PASSWORD: "password",
  NATS_TOKEN: "token",
  NATS_NKEY: "nkey",
  NATS_CREDS: "creds",
} as const;
export const TLS_ENV = { NATS_CA: "ca", NATS_CERT: "cert", NATS_KEY: "key" } as const;

function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== "")) as T;
}

export function authFromEnv(env: NodeJS.ProcessEnv = process.env): NatsAuth {
  const auth: NatsAuth = {};
  for (const [name, field] of Object.entries(AUTH_ENV)) {
    const v = env[name]?.trim();
    if (v) auth[field] = v;
  }
  const tls: NatsTls = {};
  for (const [name, field] of Object.entries(TLS_ENV)) {
    const v = env[name]?.trim();
    if (v) tls[field] = v;
  }
  if (Object.keys(tls).length > 0) auth.tls = tls;
  return auth;
}

/** Later layers win, field by field (TLS fields too). */
export function mergeAuth(...layers: (NatsAuth | undefined)[]): NatsAuth {
  const out: NatsAuth = {};
  for (const layer of layers) {
    if (!layer) continue;
    const { tls, ...rest } = layer;
    Object.assign(out, definedOnly(rest));
    if (tls) out.tls = { ...out.tls, ...definedOnly(tls) };
  }
  if (out.tls && Object.keys(out.tls).length === 0) delete out.tls;
  return out;
}

/** True when the settings name who connects (TLS alone does not, unless it carries a client cert). */
export function hasIdentity(auth: NatsAuth): boolean {
  return Boolean(auth.user || auth.token || auth.nkey || auth.creds || auth.tls?.cert);
}

export interface SplitUrl {
  /** The servers with no user, password or token in them (nats.js v3 wants those as options). */
  servers: string[];
  /** What the URL carried: `user:password@` or `token@`. */
  auth: NatsAuth;
}

function parseServer(server: string): URL | undefined {
  try {
    return new URL(server.includes("://") ? server : `nats://${server}`);
  } catch {
    return undefined;
  }
}

/** `nats://user:pass@host:4222,nats://host2` → servers without credentials, and the credentials. */
export function splitUrl(url: string): SplitUrl {
  const auth: NatsAuth = {};
  const servers = url
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((server) => {
      const u = parseServer(server);
      if (!u || (!u.username && !u.password)) return server;
      const user = decodeURIComponent(u.username);
      if (u.password) {
        auth.user = user;
        auth.password = decodeURIComponent(u.password);
      } else auth.token = user;
      u.username = "";
      u.password = "";
      return u.toString().replace(/\/$/, "");
    });
  return { servers, auth };
}

/** The URL as it may be shown: a password or token becomes `***` (a user name stays). */
export function redactUrl(url: string): string {
  return url
    .split(",")
    .map((server) => {
      const at = server.lastIndexOf("@");
      if (at < 0) return server;
      const scheme = server.indexOf("://");
      const start = scheme < 0 ? 0 : scheme + 3;
      if (at < start) return server;
      const userinfo = server.slice(start, at);
      const colon = userinfo.indexOf(":");
      const shown = colon < 0 ? "***" : `${userinfo.slice(0, colon)}:***`;
      return `${server.slice(0, start)}${shown}${server.slice(at)}`;
    })
    .join(",");
}

/** The secrets in `auth` (for scrubbing a message that may quote one back). */
export function secretsOf(auth: NatsAuth): string[] {
  return [auth.password, auth.token, auth.nkey?.startsWith("S") ? auth.nkey : undefined].filter(
    (s): s is string => typeof s === "string" && s.length >= 4,
  );
}

/** `text` with every secret of `auth` replaced by `***`, and any URL in it redacted. */
export function scrub(text: string, auth: NatsAuth): string {
  let out = text.replace(/\b[a-z]+:\/\/[^\s@/]+@/gi, (m) => redactUrl(m));
  for (const s of secretsOf(auth)) out = out.split(s).join("***");
  return out;
}
