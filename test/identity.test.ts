import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { chmodSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import * as tls from "node:tls";
import {
  CA_CERT_FILE,
  CA_KEY_FILE,
  type CorralCa,
  type IssuedCert,
  loadOrCreateCa,
} from "../src/identity/ca.ts";
import { CaKeyError } from "../src/identity/ca-key.ts";
import { writeIdentityFiles } from "../src/identity/files.ts";
import {
  agentIdFromCert,
  agentUri,
  CN_MAX_BYTES,
  canonicalAgentName,
  controlPlaneName,
  thumbprintOf,
} from "../src/identity/names.ts";
import { OID } from "../src/identity/oids.ts";
import {
  type AgentPeer,
  agentdServerOptions,
  checkControlPlanePeer,
  controlPlaneClientOptions,
  describeAgentPeer,
} from "../src/identity/tls.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

const HOUR = 3600_000;
const x509 = (issued: { certPem: string }) => new X509Certificate(issued.certPem);
const spki = (key: ReturnType<typeof createPublicKey>) => key.export({ type: "spki", format: "der" });

/** Issued by `ca`: its signature verifies with the CA's key and it names the CA as issuer. */
function issuedBy(cert: X509Certificate, caPem: string): boolean {
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

describe("the corral CA", () => {
  it("is made on first load with a 0600 key and reused on the next", async () => {
    const dir = tempDir("ca-");
    const first = await loadOrCreateCa(dir);
    assert.equal(statSync(join(dir, CA_KEY_FILE)).mode & 0o777, 0o600);
    assert.equal(readFileSync(join(dir, CA_CERT_FILE), "utf8"), first.certPem);
    const caCert = new X509Certificate(first.certPem);
    assert.equal(caCert.ca, true);
    assert.ok(caCert.checkIssued(caCert) && caCert.verify(caCert.publicKey), "self-signed");

    const second = await loadOrCreateCa(dir);
    assert.equal(second.certPem, first.certPem);
    const agent = await second.issueAgent({ poolId: "py", agentId: "py-1" });
    assert.ok(issuedBy(x509(agent), first.certPem));
    assert.deepEqual(readdirSync(dir).sort(), [CA_CERT_FILE, CA_KEY_FILE], "no temporary files left");
  });

  it("two loads racing on an empty dir end with one key, and each one's certificates verify with the other's CA", async () => {
    const dir = tempDir("ca-race-");
    const [a, b] = await Promise.all([loadOrCreateCa(dir), loadOrCreateCa(dir)]);
    assert.deepEqual(
      spki(x509({ certPem: a.certPem }).publicKey),
      spki(x509({ certPem: b.certPem }).publicKey),
    );
    assert.ok(issuedBy(x509(await a.issueAgent({ poolId: "p", agentId: "p-1" })), b.certPem));
    assert.ok(issuedBy(x509(await b.issueAgent({ poolId: "p", agentId: "p-2" })), a.certPem));
    const onDisk = readFileSync(join(dir, CA_CERT_FILE), "utf8");
    assert.ok([a.certPem, b.certPem].includes(onDisk));
    assert.deepEqual(readdirSync(dir).sort(), [CA_CERT_FILE, CA_KEY_FILE]);
  });

  it("refuses a key others may read, without printing it", async () => {
    const dir = tempDir("ca-mode-");
    await loadOrCreateCa(dir);
    const keyFile = join(dir, CA_KEY_FILE);
    chmodSync(keyFile, 0o644);
    const keyBody = readFileSync(keyFile, "utf8").split("\n")[1] as string;
    await assert.rejects(loadOrCreateCa(dir), (err: Error) => {
      assert.ok(err instanceof CaKeyError);
      assert.match(err.message, /readable by others \(mode 644\)/);
      assert.ok(!err.message.includes(keyBody));
      return true;
    });
  });

  it("refuses a certificate that is not for the key beside it", async () => {
    const dir = tempDir("ca-mismatch-");
    await loadOrCreateCa(dir);
    const other = await loadOrCreateCa(tempDir("ca-other-"));
    writeFileSync(join(dir, CA_CERT_FILE), other.certPem);
    await assert.rejects(loadOrCreateCa(dir), /is not for the key beside it/);
  });

  it("remakes a missing certificate from the key: certificates issued before still verify", async () => {
    const dir = tempDir("ca-remake-");
    const before = await loadOrCreateCa(dir);
    const agent = await before.issueAgent({ poolId: "p", agentId: "p-1" });
    rmSync(join(dir, CA_CERT_FILE));
    const after = await loadOrCreateCa(dir);
    assert.notEqual(after.certPem, before.certPem);
    assert.ok(issuedBy(x509(agent), after.certPem));
  });
});

describe("issued certificates", () => {
  it("an agent's: CN, URI SAN, serverAuth, 24 h by default, a key that matches, a SHA-256 thumbprint", async () => {
    const ca = await loadOrCreateCa(tempDir("ca-"));
    const before = Date.now();
    const issued = await ca.issueAgent({ poolId: "py", agentId: "py-0193" });
    const cert = x509(issued);
    assert.equal(cert.subject, `CN=${canonicalAgentName("py", "py-0193")}`);
    assert.equal(cert.subject, "CN=py-0193.py.agent.corral");
    assert.equal(cert.subjectAltName, `URI:${agentUri("py-0193")}`);
    assert.deepEqual(cert.keyUsage, [OID.serverAuth]);
    assert.equal(cert.ca, false);
    assert.ok(issuedBy(cert, ca.certPem));
    assert.ok(Date.parse(cert.validFrom) <= before);
    assert.equal(Date.parse(cert.validTo), issued.notAfter);
    assert.ok(Math.abs(issued.notAfter - (before + 24 * HOUR)) < 5_000, `notAfter ${issued.notAfter}`);
    assert.deepEqual(spki(createPublicKey(createPrivateKey(issued.keyPem))), spki(cert.publicKey));
    assert.equal(issued.thumbprint, createHash("sha256").update(cert.raw).digest("hex"));
    assert.equal(issued.thumbprint, thumbprintOf(cert.raw));
    assert.deepEqual(agentIdFromCert(cert), { ok: true, agentId: "py-0193" });
  });

  it("the control plane's: CN controlPlaneName, clientAuth, no SAN, 7 days by default, or as asked", async () => {
    const ca = await loadOrCreateCa(tempDir("ca-"));
    const before = Date.now();
    const issued = await ca.issueControlPlane("prod-1");
    const cert = x509(issued);
    assert.equal(cert.subject, `CN=${controlPlaneName("prod-1")}`);
    assert.deepEqual(cert.keyUsage, [OID.clientAuth]);
    assert.equal(cert.subjectAltName, undefined);
    assert.ok(Math.abs(issued.notAfter - (before + 7 * 24 * HOUR)) < 5_000);
    const short = await ca.issueControlPlane("prod-1", { validityMs: 60_000 });
    assert.ok(Math.abs(short.notAfter - (before + 60_000)) < 5_000);
    await assert.rejects(ca.issueAgent({ poolId: "p", agentId: "a", validityMs: 0 }), /validityMs/);
  });

  it("two certificates never share a key or a thumbprint", async () => {
    const ca = await loadOrCreateCa(tempDir("ca-"));
    const a = await ca.issueAgent({ poolId: "p", agentId: "p-1" });
    const b = await ca.issueAgent({ poolId: "p", agentId: "p-1" });
    assert.notEqual(a.thumbprint, b.thumbprint);
    assert.notEqual(a.keyPem, b.keyPem);
  });
});

describe("names", () => {
  it("an agent's CN is readable when it fits and a hash of its parts when it does not", () => {
    assert.equal(canonicalAgentName("py", "py-1"), "py-1.py.agent.corral");
    const longPool = "a-pool-with-a-name-long-enough";
    const long = canonicalAgentName(longPool, `${longPool}-0193a7c4-5e6f-7abc-8def-0123456789ab`);
    assert.match(long, /^h-[0-9a-f]{40}\.agent\.corral$/);
    assert.ok(Buffer.byteLength(long) <= CN_MAX_BYTES);
    assert.equal(canonicalAgentName(longPool, `${longPool}-0193a7c4-5e6f-7abc-8def-0123456789ab`), long);
    assert.notEqual(canonicalAgentName(longPool, `${longPool}-0193a7c4-5e6f-7abc-8def-0123456789ac`), long);
  });

  it("ids with dots cannot be confused: (a.b, c) and (a, b.c) get different names", () => {
    const x = canonicalAgentName("c", "a.b");
    const y = canonicalAgentName("b.c", "a");
    assert.notEqual(x, y);
    assert.match(x, /^h-/);
    assert.ok(Buffer.byteLength(canonicalAgentName("ü".repeat(40), "x")) <= CN_MAX_BYTES);
  });

  it("the control plane's CN fits for any instance name", () => {
    assert.equal(controlPlaneName("prod-1"), "prod-1.cp.corral");
    assert.match(controlPlaneName("x".repeat(200)), /^h-[0-9a-f]{40}\.cp\.corral$/);
  });
});

describe("agentIdFromCert", () => {
  const custom = async (ca: CorralCa, uris: string[]) =>
    x509(await ca.issueCustom({ cn: "forged", uris, eku: ["serverAuth"], validityMs: HOUR }));

  it("refuses no SAN, two agent URIs, an empty id and an id with other characters", async () => {
    const ca = await loadOrCreateCa(tempDir("ca-"));
    assert.deepEqual(agentIdFromCert(await custom(ca, [])), { ok: false, reason: "no_san" });
    assert.deepEqual(agentIdFromCert(await custom(ca, ["https://example.test/x"])), {
      ok: false,
      reason: "no_san",
    });
    assert.deepEqual(agentIdFromCert(await custom(ca, [agentUri("a-1"), agentUri("a-2")])), {
      ok: false,
      reason: "malformed_san",
    });
    assert.deepEqual(agentIdFromCert(await custom(ca, [agentUri("a-1"), agentUri("a-1")])), {
      ok: false,
      reason: "malformed_san",
    });
    assert.deepEqual(agentIdFromCert(await custom(ca, ["urn:corral:agent:"])), {
      ok: false,
      reason: "empty_san",
    });
    assert.deepEqual(agentIdFromCert(await custom(ca, ["urn:corral:agent:a 1, URI:urn:corral:agent:b"])), {
      ok: false,
      reason: "malformed_san",
    });
  });

  it("reads the one agent URI among other names", async () => {
    const ca = await loadOrCreateCa(tempDir("ca-"));
    const cert = await custom(ca, ["https://example.test/x", agentUri("p-9")]);
    assert.deepEqual(agentIdFromCert(cert), { ok: true, agentId: "p-9" });
  });
});

describe("identity files", () => {
  it("writes the agent's certificate, its 0600 key and the CA, whole, and says where", async () => {
    const ca = await loadOrCreateCa(tempDir("ca-"));
    const issued = await ca.issueAgent({ poolId: "p", agentId: "p-1" });
    const dir = join(tempDir("agent-"), "identity");
    const files = writeIdentityFiles(dir, issued, ca.certPem);
    assert.deepEqual(files, {
      certFile: join(dir, "agent.crt"),
      keyFile: join(dir, "agent.key"),
      caFile: join(dir, "ca.crt"),
    });
    assert.equal(readFileSync(files.certFile, "utf8"), issued.certPem);
    assert.equal(readFileSync(files.keyFile, "utf8"), issued.keyPem);
    assert.equal(readFileSync(files.caFile, "utf8"), ca.certPem);
    assert.equal(statSync(files.keyFile).mode & 0o777, 0o600);
    const renewed = await ca.issueAgent({ poolId: "p", agentId: "p-1" });
    writeIdentityFiles(dir, renewed, ca.certPem);
    assert.equal(readFileSync(files.certFile, "utf8"), renewed.certPem);
    assert.deepEqual(readdirSync(dir).sort(), ["agent.crt", "agent.key", "ca.crt"]);
  });
});

// ---- TLS over loopback: agentd's server (strict) and the control plane's client (permissive) ----

type ServerOutcome = { accepted: true } | { accepted: false; reason: string };

/**
 * An agentd-style server: the options and check under test, the socket destroyed before a byte
 * is read when the check fails, "ok" written back when it passes. Each connection's outcome is
 * queued for the test to take.
 */
async function startAgentd(
  identity: { certPem: string; keyPem: string; caPem: string },
  controlPlaneCN: string,
) {
  const outcomes: ServerOutcome[] = [];
  const waiters: ((o: ServerOutcome) => void)[] = [];
  const record = (o: ServerOutcome) => {
    const waiter = waiters.shift();
    if (waiter) waiter(o);
    else outcomes.push(o);
  };
  const server = tls.createServer(agentdServerOptions({ ...identity, controlPlaneCN }), (socket) => {
    const check = checkControlPlanePeer(socket, controlPlaneCN);
    if (!check.ok) {
      socket.destroy();
      record({ accepted: false, reason: check.reason });
      return;
    }
    record({ accepted: true });
    socket.resume(); // read the client's bytes and its end, so the connection closes
    socket.end("ok");
  });
  server.on("tlsClientError", (err: NodeJS.ErrnoException) =>
    record({ accepted: false, reason: `handshake: ${err.code ?? err.message}` }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTeardown("agentd test server", () => {
    return new Promise((resolve) => server.close(resolve));
  });
  return {
    port: (server.address() as AddressInfo).port,
    next: () =>
      new Promise<ServerOutcome>((resolve) => {
        const queued = outcomes.shift();
        if (queued) resolve(queued);
        else waiters.push(resolve);
      }),
  };
}

type ClientOutcome = { reply: string; peer: AgentPeer | undefined; error: string | undefined };

/** Connects as the control plane would and reads until the server closes. */
function connectAsControlPlane(port: number, options: tls.ConnectionOptions): Promise<ClientOutcome> {
  return new Promise((resolve) => {
    let reply = "";
    let peer: AgentPeer | undefined;
    let error: string | undefined;
    const socket = tls.connect({ ...options, host: "127.0.0.1", port }, () => {
      peer = describeAgentPeer(socket);
      socket.write("hello");
    });
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      reply += chunk;
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on("close", () => resolve({ reply, peer, error }));
  });
}

describe("the control channel's TLS", () => {
  const cpName = controlPlaneName("prod-1");
  let ca: CorralCa;
  let otherCa: CorralCa;
  let cp: IssuedCert;
  let agent: IssuedCert;
  let agentd: Awaited<ReturnType<typeof startAgentd>>;
  before(async () => {
    ca = await loadOrCreateCa(tempDir("ca-"));
    otherCa = await loadOrCreateCa(tempDir("ca-other-"));
    cp = await ca.issueControlPlane("prod-1");
    agent = await ca.issueAgent({ poolId: "py", agentId: "py-1" });
    agentd = await startAgentd({ ...agent, caPem: ca.certPem }, cpName);
  });
  const asClient = (issued: IssuedCert | undefined) =>
    controlPlaneClientOptions({
      certPem: issued?.certPem ?? "",
      keyPem: issued?.keyPem ?? "",
      caPem: ca.certPem,
    });

  it("agentd accepts the control plane's certificate, and the control plane sees a verified agent", async () => {
    const client = await connectAsControlPlane(agentd.port, asClient(cp));
    assert.deepEqual(await agentd.next(), { accepted: true });
    assert.equal(client.reply, "ok");
    assert.ok(client.peer && client.peer.peerCN !== null);
    assert.equal(client.peer.peerCN, canonicalAgentName("py", "py-1"));
    assert.equal(client.peer.chain, "ok");
    assert.equal(client.peer.thumbprint, agent.thumbprint);
    assert.deepEqual(agentIdFromCert(client.peer.cert), { ok: true, agentId: "py-1" });
  });

  const refusals: [string, () => Promise<tls.ConnectionOptions>, RegExp][] = [
    [
      "no certificate",
      async () => {
        const { cert: _c, key: _k, ...rest } = asClient(undefined);
        return rest;
      },
      /^handshake: /,
    ],
    [
      "a certificate from another CA",
      async () => asClient(await otherCa.issueControlPlane("prod-1")),
      /^handshake: /,
    ],
    [
      "a certificate from the CA with another CN",
      async () => asClient(await ca.issueControlPlane("prod-2")),
      /^CN mismatch$/,
    ],
    [
      "the right CN without any EKU (openssl allows it; the check does not)",
      async () => asClient(await ca.issueCustom({ cn: cpName, uris: [], eku: [], validityMs: HOUR })),
      /^no clientAuth EKU$/,
    ],
    [
      "the right CN with serverAuth only",
      async () =>
        asClient(await ca.issueCustom({ cn: cpName, uris: [], eku: ["serverAuth"], validityMs: HOUR })),
      /^handshake: |^no clientAuth EKU$/,
    ],
    [
      "an agent's certificate",
      async () => asClient(await ca.issueAgent({ poolId: "py", agentId: "py-2" })),
      /^handshake: |^CN mismatch$/,
    ],
  ];
  for (const [what, options, reason] of refusals) {
    it(`agentd refuses ${what} before reading a byte`, async () => {
      const client = await connectAsControlPlane(agentd.port, await options());
      const outcome = await agentd.next();
      assert.equal(outcome.accepted, false);
      assert.match(outcome.accepted ? "" : outcome.reason, reason);
      assert.equal(client.reply, "");
    });
  }

  it("the control plane connects to an agent whose certificate is from another CA and reports the chain failure", async () => {
    const forged = await otherCa.issueAgent({ poolId: "py", agentId: "py-1" });
    const impostor = await startAgentd({ ...forged, caPem: ca.certPem }, cpName);
    const client = await connectAsControlPlane(impostor.port, asClient(cp));
    assert.deepEqual(await impostor.next(), { accepted: true });
    assert.equal(client.reply, "ok", "the client did not abort");
    assert.ok(client.peer && client.peer.peerCN !== null);
    assert.equal(client.peer.peerCN, canonicalAgentName("py", "py-1"));
    assert.notEqual(client.peer.chain, "ok");
    assert.match(client.peer.chain, /^[A-Z_]+$/);
    assert.equal(client.peer.thumbprint, forged.thumbprint);
  });

  it("agentd's options refuse a control-plane CN no certificate can hold", () => {
    assert.throws(
      () => agentdServerOptions({ ...agent, caPem: ca.certPem, controlPlaneCN: "" }),
      /1 to 64 bytes/,
    );
    assert.throws(
      () => agentdServerOptions({ ...agent, caPem: ca.certPem, controlPlaneCN: "x".repeat(65) }),
      /1 to 64 bytes, got 65/,
    );
  });
});
