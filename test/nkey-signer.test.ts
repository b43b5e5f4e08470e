import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { credsAuthenticator as natsCreds, nkeyAuthenticator as natsNkey } from "@nats-io/nats-core";
import { fromSeed, Prefix } from "@nats-io/nkeys";
import fc from "fast-check";
import { NatsCredentialsError } from "../src/nats/credential-files.ts";
import { credsAuthenticator, nkeyAuthenticator, nkeyFromSeed } from "../src/nats/nkey-signer.ts";
import { jwtChain } from "./helpers/nats-jwt.ts";

// nkeys' own seed encoder (not part of its public API): the reference the native signer must match.
const { Codec } = createRequire(import.meta.url)("@nats-io/nkeys/lib/codec.js") as {
  Codec: { encodeSeed(role: Prefix, raw: Uint8Array): Uint8Array };
};
const ROLES = [Prefix.User, Prefix.Account, Prefix.Operator, Prefix.Server, Prefix.Cluster];
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("native nkey signing (src/nats/nkey-signer.ts), against nkeys.js", () => {
  it("gives the same public key and the same signature for any seed and message", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.constantFrom(...ROLES),
        fc.uint8Array({ maxLength: 64 }),
        (raw, role, message) => {
          const seed = Codec.encodeSeed(role, raw);
          const reference = fromSeed(seed);
          const ours = nkeyFromSeed(seed);
          assert.equal(ours.publicKey, reference.getPublicKey());
          assert.deepEqual(Buffer.from(ours.sign(message)), Buffer.from(reference.sign(message)));
          assert.equal(reference.verify(message, ours.sign(message)), true);
        },
      ),
      { numRuns: 50 },
    );
  });

  it("answers a server's nonce as nats.js's nkeyAuthenticator does", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.string({ minLength: 1 }),
        (raw, nonce) => {
          const seed = Codec.encodeSeed(Prefix.User, raw);
          assert.deepEqual(nkeyAuthenticator(seed)(nonce), natsNkey(seed)(nonce));
        },
      ),
      { numRuns: 30 },
    );
    const seed = Codec.encodeSeed(Prefix.User, new Uint8Array(32).fill(7));
    assert.deepEqual(nkeyAuthenticator(seed)(), natsNkey(seed)(), "no nonce: the key, no signature");
  });

  it("answers as nats.js's credsAuthenticator does for a creds file", () => {
    const { creds } = jwtChain();
    const bytes = new TextEncoder().encode(creds);
    assert.deepEqual(credsAuthenticator(bytes, "user.creds")("a-nonce"), natsCreds(bytes)("a-nonce"));
    // Written on Windows: the same answer.
    const crlf = new TextEncoder().encode(creds.replaceAll("\n", "\r\n"));
    assert.deepEqual(credsAuthenticator(crlf, "user.creds")("a-nonce"), natsCreds(bytes)("a-nonce"));
  });

  it("refuses a malformed seed or creds file without printing the seed", () => {
    const seed = text(Codec.encodeSeed(Prefix.User, new Uint8Array(32).fill(9)));
    const flipped = `${seed.slice(0, 10)}${seed[10] === "A" ? "B" : "A"}${seed.slice(11)}`;
    const publicKey = nkeyFromSeed(seed).publicKey;
    for (const bad of [flipped, seed.slice(0, -1), seed.toLowerCase(), publicKey, `${seed.slice(0, -1)}1`]) {
      assert.throws(
        () => nkeyFromSeed(bad),
        (err: Error) => err instanceof NatsCredentialsError && !err.message.includes(bad.slice(4, 20)),
        bad,
      );
    }
    assert.throws(
      () => credsAuthenticator(new TextEncoder().encode(`just ${seed}\n`), "user.creds"),
      (err: Error) =>
        err instanceof NatsCredentialsError && /user\.creds/.test(err.message) && !err.message.includes(seed),
    );
  });
});
