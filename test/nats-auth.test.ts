import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { createUser } from "@nats-io/nkeys";
import { mergeAuth, redactUrl, scrub, splitUrl } from "../src/nats/auth.ts";
import { corral, type Run } from "./helpers/cli.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { jwtChain } from "./helpers/nats-jwt.ts";
import { tempDir } from "./helpers/teardown.ts";

/**
 * Item 1 of issue 7: corral connects to a nats-server that requires credentials — user and
 * password, token, nkey, .creds (JWT), TLS with a client certificate — given in the URL, the
 * environment, flags or corral.yaml; and no output of any of it ever shows a secret.
 */

const secret = (n = 18) => randomBytes(n).toString("base64url");
/** Every secret a test here uses; none may appear in any output (the last test checks). */
const secrets: string[] = [];
const runs: { args: string[]; run: Run }[] = [];

/** `corral <args>` with no NATS_* variable but those given (nothing from the outside leaks in). */
async function run(args: string[], env: Record<string, string | undefined>): Promise<Run> {
  const clean = Object.fromEntries(
    [
      "NATS_URL",
      "NATS_USER",
      "NATS_PASSWORD",
      "NATS_TOKEN",
      "NATS_NKEY",
      "NATS_CREDS",
      "NATS_CA",
      "NATS_CERT",
      "NATS_KEY",
    ].map((k) => [k, undefined]),
  );
  const r = await corral(args, { ...clean, CORRAL_LOG_LEVEL: "debug", ...env });
  runs.push({ args, run: r });
  return r;
}

/** `corral events tail -n 1`: connects, opens the stream (JetStream), exits 0. */
const tail = (env: Record<string, string | undefined>, ...flags: string[]) =>
  run([...flags, "events", "tail", "-n", "1"], env);

function ok(r: Run, what: string): void {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
}

function refused(r: Run, what: string): void {
  assert.equal(r.code, 3, `${what}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /refused the connection: Authorization Violation/, what);
  assert.match(r.stderr, /NATS_CREDS/, `${what}: says how to give credentials`);
}

describe("URLs and settings (no server)", () => {
  it("splitUrl takes user:password@ and token@ out of each server; redactUrl hides them", () => {
    assert.deepEqual(splitUrl("nats://u:p%40ss@h:4222,nats://h2:4223"), {
      servers: ["nats://h:4222", "nats://h2:4223"],
      auth: { user: "u", password: "p@ss" },
    });
    assert.deepEqual(splitUrl("tls://tok@h:4222"), { servers: ["tls://h:4222"], auth: { token: "tok" } });
    assert.deepEqual(splitUrl("127.0.0.1:4222"), { servers: ["127.0.0.1:4222"], auth: {} });
    assert.equal(redactUrl("nats://u:p@h:1,tok@h2:2,nats://h3"), "nats://u:***@h:1,***@h2:2,nats://h3");
    assert.equal(scrub("at nats://u:pw@h:1: bad pw", { password: "pw12" }), "at nats://u:***@h:1: bad pw");
    assert.equal(scrub("token abcdEF here", { token: "abcdEF" }), "token *** here");
  });

  it("mergeAuth: later layers win field by field, TLS too", () => {
    assert.deepEqual(
      mergeAuth(
        { user: "a", password: "x", tls: { ca: "c" } },
        { user: "b", password: undefined },
        { tls: { cert: "k" } },
      ),
      { user: "b", password: "x", tls: { ca: "c", cert: "k" } },
    );
  });
});

describe("credentials against real nats-servers", () => {
  it("user and password: in the URL, NATS_USER/NATS_PASSWORD, flags, corral.yaml; wrong ones refused, never shown", async () => {
    const password = secret();
    secrets.push(password);
    const t = await startTestNats({
      config: `authorization { users: [ { user: corral, password: "${password}" } ] }\n`,
    });
    const host = `127.0.0.1:${t.server.port}`;
    ok(await tail({ NATS_URL: `nats://corral:${password}@${host}` }), "user:password in NATS_URL");
    ok(await tail({ NATS_URL: t.url, NATS_USER: "corral", NATS_PASSWORD: password }), "from the environment");
    ok(await tail({}, "--nats", t.url, "--nats-user", "corral", "--nats-password", password), "from flags");
    refused(await tail({ NATS_URL: t.url }), "no credentials");

    const wrong = secret();
    secrets.push(wrong);
    const r = await tail({ NATS_URL: `nats://corral:${wrong}@${host}` });
    refused(r, "a wrong password");
    assert.match(r.stderr, new RegExp(`NATS at nats://corral:\\*\\*\\*@${host} refused`));

    // corral.yaml: `nats: { url, user, password }`, used by `corral down` (its request, then the
    // control plane it runs itself when no daemon answers) with debug logs on.
    const dir = tempDir("auth-yaml-");
    const config = join(dir, "corral.yaml");
    writeFileSync(
      config,
      [
        "instance: auth-yaml",
        `stateDir: ${join(dir, "state")}`,
        `nats: { url: "${t.url}", user: corral, password: "${password}" }`,
        "pools: { p: { runtime: process, min: 0, warm: 0, max: 1 } }",
        "",
      ].join("\n"),
    );
    const down = await run(["down", "--config", config], {});
    ok(down, "corral down with the credentials in corral.yaml");
    assert.match(down.stdout, /no daemon was running/);
  });

  it("token: in the URL, NATS_TOKEN, --nats-token; a wrong one refused, never shown", async () => {
    const token = secret();
    secrets.push(token);
    const t = await startTestNats({ config: `authorization { token: "${token}" }\n` });
    const host = `127.0.0.1:${t.server.port}`;
    ok(await tail({ NATS_URL: `nats://${token}@${host}` }), "token@ in NATS_URL");
    ok(await tail({ NATS_URL: t.url, NATS_TOKEN: token }), "NATS_TOKEN");
    ok(await tail({ NATS_URL: t.url }, "--nats-token", token), "--nats-token");
    const wrong = secret();
    secrets.push(wrong);
    const r = await tail({ NATS_URL: `nats://${wrong}@${host}` });
    refused(r, "a wrong token");
    assert.match(r.stderr, new RegExp(`NATS at nats://\\*\\*\\*@${host} refused`));
  });

  it("nkey: a seed file (NATS_NKEY, --nats-nkey) or the seed itself; another key refused", async () => {
    const user = createUser();
    const seed = new TextDecoder().decode(user.getSeed());
    const other = new TextDecoder().decode(createUser().getSeed());
    secrets.push(seed, other);
    const t = await startTestNats({
      config: `authorization { users: [ { nkey: ${user.getPublicKey()} } ] }\n`,
    });
    const dir = tempDir("nkey-");
    const file = join(dir, "user.nk");
    writeFileSync(file, `${seed}\n`, { mode: 0o600 });
    ok(await tail({ NATS_URL: t.url, NATS_NKEY: file }), "NATS_NKEY=<file>");
    ok(await tail({ NATS_URL: t.url }, "--nats-nkey", file), "--nats-nkey <file>");
    ok(await tail({ NATS_URL: t.url, NATS_NKEY: seed }), "NATS_NKEY=<seed>");
    refused(await tail({ NATS_URL: t.url, NATS_NKEY: other }), "another user's seed");
    const missing = await tail({ NATS_URL: t.url, NATS_NKEY: join(dir, "nope.nk") });
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /cannot read the NATS nkey file .*nope\.nk: ENOENT/);
  });

  it(".creds: a user JWT of an operator's account and its seed (NATS_CREDS, --nats-creds)", async () => {
    const chain = jwtChain();
    secrets.push(chain.userSeed);
    const t = await startTestNats({ config: `${chain.serverConfig}\n` });
    const file = join(tempDir("creds-"), "user.creds");
    writeFileSync(file, chain.creds, { mode: 0o600 });
    ok(await tail({ NATS_URL: t.url, NATS_CREDS: file }), "NATS_CREDS");
    ok(await tail({ NATS_URL: t.url }, "--nats-creds", file), "--nats-creds");
    refused(await tail({ NATS_URL: t.url }), "no credentials");
  });

  it("TLS: the server's CA and a client certificate (NATS_CA/NATS_CERT/NATS_KEY, flags)", async (ctx) => {
    const dir = tempDir("tls-");
    if (!makeCertificates(dir)) {
      ctx.skip("openssl is not installed: no certificates to test TLS with");
      return;
    }
    const f = (name: string) => join(dir, name);
    const t: TestNats = await startTestNats({
      config: `tls { cert_file: "${f("server.pem")}", key_file: "${f("server.key")}", ca_file: "${f("ca.pem")}", verify: true }\n`,
    });
    const env = {
      NATS_URL: t.url,
      NATS_CA: f("ca.pem"),
      NATS_CERT: f("client.pem"),
      NATS_KEY: f("client.key"),
    };
    ok(await tail(env), "CA, client certificate and key from the environment");
    ok(await tail({ ...env, NATS_URL: `tls://127.0.0.1:${t.server.port}` }), "a tls:// URL");
    ok(
      await tail(
        { NATS_URL: t.url },
        "--nats-ca",
        f("ca.pem"),
        "--nats-cert",
        f("client.pem"),
        "--nats-key",
        f("client.key"),
      ),
      "from flags",
    );
    const noCert = await tail({ NATS_URL: t.url, NATS_CA: f("ca.pem") });
    assert.equal(noCert.code, 3, `no client certificate: ${noCert.stderr}`);
  });
});

/** A CA, a server certificate for 127.0.0.1 and a client certificate; false without openssl. */
function makeCertificates(dir: string): boolean {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  try {
    ssl("version");
  } catch {
    return false;
  }
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=corral-test-ca",
  );
  writeFileSync(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  for (const name of ["server", "client"]) {
    ssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=corral-test-${name}`);
    ssl(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "1",
      "-extfile",
      "san.ext",
    );
  }
  return true;
}

describe("secrets", () => {
  it("no output of any run above (stdout, stderr with debug logs) contains a secret it used", () => {
    assert.ok(runs.length >= 15, `runs recorded: ${runs.length}`);
    for (const { args, run: r } of runs)
      for (const s of secrets)
        assert.ok(
          !r.stdout.includes(s) && !r.stderr.includes(s),
          `a secret in the output of corral ${args.filter((a) => !secrets.includes(a)).join(" ")}`,
        );
  });
});
