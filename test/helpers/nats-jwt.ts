import { createHash } from "node:crypto";
import { createAccount, createOperator, createUser, type KeyPair } from "@nats-io/nkeys";

/**
 * A NATS operator → account → user JWT chain made by hand (no `nsc` here), to test corral with
 * a `.creds` file against a nats-server in operator mode. Each JWT is `header.claims.signature`,
 * base64url without padding, signed by its issuer's nkey (alg ed25519-nkey); jti is a hash of the
 * claims, as nats-io/jwt makes it.
 */

const b64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString("base64url");

function base32(bytes: Uint8Array): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

function jwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const claims: Record<string, unknown> = {
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
    nats: { ...nats, version: 2 },
  };
  claims.jti = base32(createHash("sha256").update(JSON.stringify(claims)).digest());
  const head = b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }));
  const body = b64url(JSON.stringify(claims));
  const sig = issuer.sign(new TextEncoder().encode(`${head}.${body}`));
  return `${head}.${body}.${b64url(sig)}`;
}

const UNLIMITED = { subs: -1, data: -1, payload: -1 };

export interface JwtChain {
  /** The server config lines for operator mode (memory resolver, the account preloaded). */
  serverConfig: string;
  /** The user's `.creds` file content (JWT and seed). */
  creds: string;
  userSeed: string;
}

export function jwtChain(): JwtChain {
  const operator = createOperator();
  const account = createAccount();
  const system = createAccount(); // JetStream will not start in operator mode without one
  const user = createUser();
  const operatorJwt = jwt(operator, operator.getPublicKey(), "corral-test-operator", { type: "operator" });
  const accountJwt = jwt(operator, account.getPublicKey(), "corral-test-account", {
    type: "account",
    limits: {
      ...UNLIMITED,
      ...{ imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 },
      // JetStream for this account (corral needs its stream)
      ...{ mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
    },
  });
  const systemJwt = jwt(operator, system.getPublicKey(), "SYS", { type: "account", limits: UNLIMITED });
  const userJwt = jwt(account, user.getPublicKey(), "corral-test-user", {
    type: "user",
    pub: {},
    sub: {},
    ...UNLIMITED,
  });
  const userSeed = new TextDecoder().decode(user.getSeed());
  return {
    serverConfig: [
      `operator: ${operatorJwt}`,
      `system_account: ${system.getPublicKey()}`,
      "resolver: MEMORY",
      `resolver_preload: { ${account.getPublicKey()}: ${accountJwt}, ${system.getPublicKey()}: ${systemJwt} }`,
    ].join("\n"),
    creds: [
      "-----BEGIN NATS USER JWT-----",
      userJwt,
      "------END NATS USER JWT------",
      "",
      "-----BEGIN USER NKEY SEED-----",
      userSeed,
      "------END USER NKEY SEED------",
      "",
    ].join("\n"),
    userSeed,
  };
}
