import assert from "node:assert/strict";
import { createCipheriv, createHash, createHmac } from "node:crypto";
import { chmodSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { headers } from "@nats-io/nats-core";
import fc from "fast-check";
import { commandAggregate } from "../machines/command.ts";
import { encode, encodeEvent } from "../src/codec/msgpack.ts";
import { ActorHost } from "../src/cp/actor-host.ts";
import type { AggregateRef } from "../src/events/envelope.ts";
import { ForgedEventError } from "../src/events/errors.ts";
import { CheckpointStore } from "../src/projections/checkpoints.ts";
import { EventKey, MARK_HEADER, type MarkInput, markedPrev } from "../src/store/event-mark.ts";
import { EventStore } from "../src/store/event-store.ts";
import { KEY_FILE_ENV, KeyFileError, loadOrCreateEventKey, readEventKey } from "../src/store/key-file.ts";
import { VERDICTS } from "../src/store/mark-batch.ts";
import { markOf } from "../src/store/mark-header.ts";
import { SPAN } from "../src/store/mark-module.ts";
import { MarkRing, UNMACABLE } from "../src/store/mark-ring.ts";
import { PipelinedPublisher } from "../src/store/publisher.ts";
import type { StoredRecord } from "../src/store/records.ts";
import { SnapshotStore, UnmarkedSnapshotError } from "../src/store/snapshots.ts";
import { eventSubject } from "../src/store/subjects.ts";
import { makeEvent } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { tempDir } from "./helpers/teardown.ts";

const created = (ref: AggregateRef) =>
  makeEvent(ref, "CommandCreated", { agentId: "agent-1", action: "echo", payload: { text: ref.id } });

describe("the event mark", () => {
  const key = EventKey.generate();
  const subject = "corral.evt.command.m-1";
  const body = encodeEvent(created({ kind: "command", id: "m-1" }));

  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(n));
    return b;
  };
  /** The MAC input: length-prefixed subject, prev, length-prefixed body. */
  const input = (subj: string, prev: number, b: Uint8Array) =>
    Buffer.concat([u16(subj.length), Buffer.from(subj), u64(prev), u32(b.length), b]);

  const aes = (k: Uint8Array, block: Uint8Array) => {
    const c = createCipheriv("aes-128-ecb", k, null);
    c.setAutoPadding(false);
    return c.update(block);
  };
  const deriver = (secret: Uint8Array, version: number) => (label: string) =>
    createHmac("sha256", secret).update(`corral mark v${version} ${label}`).digest().subarray(0, 16);

  /** PMAC as the design states it: Σ = ⊕ E1(M_i ⊕ 2^i·L), tag = E2(Σ), with BigInt doubling and one cipher per block. */
  function referencePmac(derive: (label: string) => Buffer, m: Buffer): string {
    const mask = (1n << 128n) - 1n;
    let delta = BigInt(`0x${derive("offset").toString("hex")}`);
    const sum = Buffer.alloc(16);
    for (let i = 0; i < m.length / 16; i++) {
      delta = ((delta << 1n) & mask) ^ (delta >> 127n ? 0x87n : 0n); // Δ_i = 2^i · L
      const x = Buffer.from(delta.toString(16).padStart(32, "0"), "hex");
      for (let j = 0; j < 16; j++) x[j] = (x[j] as number) ^ (m[16 * i + j] as number);
      const y = aes(derive("blocks"), x);
      for (let j = 0; j < 16; j++) sum[j] = (sum[j] as number) ^ (y[j] as number);
    }
    return aes(derive("final"), sum).toString("base64url");
  }

  /**
   * The v3 tag as the design states it (ARCHITECTURE.md, "Event marks"): PMAC over the input
   * padded 10*, sharing no code with mark-mac.ts.
   */
  function referenceTag(secret: Uint8Array, subj: string, prev: number, b: Uint8Array): string {
    let m = Buffer.concat([input(subj, prev, b), Buffer.from([0x80])]);
    m = Buffer.concat([m, Buffer.alloc((16 - (m.length % 16)) % 16)]);
    return referencePmac(deriver(secret, 3), m);
  }

  /**
   * The v4 tag as the design states it (src/store/mark-hash.ts, ARCHITECTURE.md "Event marks"):
   * NH over 1 KiB chunks of `first block ‖ subject ‖ body` (each zero-padded to 32 bytes), four
   * passes, in BigInt arithmetic; the chunks' sums are the blocks of a PMAC under v4's keys. Shares
   * no code with mark-hash.ts, mark-mac.ts or mark-check.c.
   */
  function referenceTagV4(secret: Uint8Array, subj: string, prev: number, b: Uint8Array): string {
    const derive = deriver(secret, 4);
    const keyStream = createCipheriv("aes-128-ctr", derive("hash"), Buffer.alloc(16)).update(
      Buffer.alloc(4 * 4 * 256),
    );
    const word = (bytes: Buffer, i: number) => BigInt(bytes.readUInt32LE(4 * i));
    const pad32 = (x: Uint8Array) => Buffer.concat([x, Buffer.alloc((32 - (x.length % 32)) % 32)]);
    const first = Buffer.alloc(32);
    first.writeUInt16BE(subj.length, 0);
    first.writeBigUInt64BE(BigInt(prev), 2);
    first.writeUInt32BE(b.length, 10);
    const hashed = Buffer.concat([first, pad32(Buffer.from(subj)), pad32(b)]);
    const blocks: Buffer[] = [];
    for (let at = 0; at < hashed.length; at += 1024) {
      const chunk = hashed.subarray(at, at + 1024);
      const sums = Buffer.alloc(32);
      for (let q = 0; q < 4; q++) {
        let sum = 0n;
        for (let i = 0; i < chunk.length / 4; i += 8) {
          for (let t = 0; t < 4; t++) {
            const x = (word(chunk, i + t) + word(keyStream, 256 * q + i + t)) % 2n ** 32n;
            const y = (word(chunk, i + t + 4) + word(keyStream, 256 * q + i + t + 4)) % 2n ** 32n;
            sum = (sum + x * y) % 2n ** 64n;
          }
        }
        sums.writeBigUInt64LE(sum, 8 * q);
      }
      blocks.push(sums);
    }
    return referencePmac(derive, Buffer.concat(blocks));
  }

  it("is the v4 tag as a reference written from the design computes it, for short, long and far-positioned events", () => {
    const secret = Buffer.alloc(32, 7);
    const k = EventKey.fromBytes(secret);
    const want = referenceTagV4(secret, subject, 42, body);
    assert.equal(k.tag(subject, 42, body), want);
    assert.equal(k.mark(subject, body, 42), `v4.${k.id}.42.${want}`);
    // Positions past 2^32 keep their high bits.
    assert.equal(k.tag(subject, 2 ** 40 + 5, body), referenceTagV4(secret, subject, 2 ** 40 + 5, body));
    // Many chunks; and more than the module's input at once (512 KiB), hashed in parts.
    for (const n of [100_000, 600_000]) {
      const big = new Uint8Array(n).map((_, i) => (i * 7) % 251);
      assert.equal(k.tag(subject, 42, big), referenceTagV4(secret, subject, 42, big), `${n} bytes`);
    }
    assert.equal(k.tag(subject, 42, body), want, "still right after the buffers grew");
    // Every length around a 32-byte pad and around the first chunk's end (32 + 32 + 960 = 1 KiB),
    // the empty body and the empty subject.
    for (const n of [0, 1, 31, 32, 33, 63, 64, 65, 959, 960, 961, 992, 993]) {
      const b = new Uint8Array(n).fill(n % 256);
      assert.equal(k.tag(subject, 1, b), referenceTagV4(secret, subject, 1, b), `${n} bytes`);
    }
    assert.equal(k.tag("", 1, body), referenceTagV4(secret, "", 1, body), "empty subject");
  });

  it("still reads a v3 mark (PMAC over the bytes themselves) as valid, as the reference computes it", () => {
    const secret = Buffer.alloc(32, 7);
    const k = EventKey.fromBytes(secret);
    const want = referenceTag(secret, subject, 42, body);
    assert.equal(k.macV3(subject, 42, body), want);
    assert.equal(k.check(subject, body, `v3.${k.id}.42.${want}`), "valid");
    assert.equal(k.macV3(subject, 2 ** 40 + 5, body), referenceTag(secret, subject, 2 ** 40 + 5, body));
    const big = new Uint8Array(100_000).map((_, i) => i % 251);
    assert.equal(k.macV3(subject, 42, big), referenceTag(secret, subject, 42, big));
    for (let n = 0; n <= 40; n++) {
      const b = new Uint8Array(n).fill(n);
      assert.equal(k.macV3(subject, 1, b), referenceTag(secret, subject, 1, b), `${n} bytes`);
    }
    // Each version's tag under the other's name does not match: their keys differ.
    const v4 = k.mark(subject, body, 42);
    assert.equal(k.check(subject, body, `v3${v4.slice(2)}`), "mismatch");
    assert.equal(k.check(subject, body, `v4.${k.id}.42.${want}`), "mismatch");
  });

  it("marks a burst together exactly as one by one", () => {
    const inputs = Array.from({ length: 300 }, (_, i) => ({
      subject: `${subject}${i % 7}`,
      prev: i * 1_000_003,
      body: new Uint8Array((i * 37) % 1_500).fill(i),
    }));
    // Large enough for several native calls of 64 KiB.
    inputs.push({ subject, prev: 9, body: new Uint8Array(70_000).fill(5) });
    assert.deepEqual(
      key.markAll(inputs),
      inputs.map(({ subject: s, prev, body: b }) => key.mark(s, b, prev)),
    );
  });

  it("marks a burst past one round of the module (entries, bytes) as one by one, leaving out what it cannot mark", () => {
    const inputs: MarkInput[] = Array.from({ length: 4_500 }, (_, i) => ({
      subject: `${subject}${i % 11}`,
      prev: i,
      body: new Uint8Array(i % 300).fill(i),
    }));
    // Over a MiB between them, and one alone larger than the module's staging area so far.
    for (const at of [100, 2_000, 4_400])
      inputs.splice(at, 0, { subject, prev: at, body: new Uint8Array(700_000).fill(at) });
    inputs.splice(3_000, 0, { subject: `${subject}\u0131`, prev: 1, body }, { subject, prev: -1, body });
    const marks = key.markAll(inputs);
    assert.equal(marks.length, inputs.length);
    inputs.forEach(({ subject: s, prev, body: b }, i) => {
      if (i === 3_000 || i === 3_001) assert.equal(marks[i], undefined);
      else assert.equal(marks[i], key.mark(s, b, prev), `input ${i}`);
    });
  });

  it("still reads a v2 mark (one SHA-256 over key, a zero pad and the same input) as valid", () => {
    const secret = Buffer.alloc(32, 7);
    const k = EventKey.fromBytes(secret);
    const v2 = (b: Uint8Array, prev = 42) =>
      createHash("sha256")
        .update(secret)
        .update(Buffer.alloc(32))
        .update(input(subject, prev, b))
        .digest("base64url");
    assert.equal(k.macV2(subject, 42, body), v2(body));
    const mark = `v2.${k.id}.42.${v2(body)}`;
    assert.equal(k.check(subject, body, mark), "valid");
    assert.equal(markedPrev(mark), 42);
    assert.equal(
      k.check(
        subject,
        Uint8Array.from(body, (x, i) => (i === 3 ? x ^ 1 : x)),
        mark,
      ),
      "mismatch",
    );
    assert.equal(k.check(subject, body, mark.replace(".42.", ".43.")), "mismatch");
    // A v2 mark's MAC is 43 characters, a v3 tag 22: one version's length under the other's name is malformed.
    assert.equal(k.check(subject, body, `v3${mark.slice(2)}`), "malformed");
    assert.equal(k.check(subject, body, `v2${k.mark(subject, body, 42).slice(2)}`), "malformed");
  });

  it("is never made for a subject that is not ASCII, nor checked valid on one", () => {
    const mark = key.mark(subject, body, 0);
    const wide = `${subject.slice(0, -1)}\u0131`; // same low byte as "1"
    assert.equal(key.tag(wide, 0, body), undefined);
    assert.throws(() => key.mark(wide, body, 0), /cannot mark/);
    assert.equal(key.check(wide, body, mark), "mismatch");
  });

  it("reads a v1 mark (HMAC-SHA256, before the one-call MAC) as malformed", () => {
    const secret = Buffer.alloc(32, 9);
    const k = EventKey.fromBytes(secret);
    const hmac = createHmac("sha256", secret).update(subject).update("\u00000\u0000").update(body);
    const v1 = `v1.${k.id}.0.${hmac.digest("base64url")}`;
    assert.equal(k.check(subject, body, v1), "malformed");
  });

  it("holds for the exact subject, position and body it was made for, and names the position", () => {
    const mark = key.mark(subject, body, 1234);
    assert.equal(key.check(subject, body, mark), "valid");
    assert.equal(markedPrev(mark), 1234);
  });

  it("fails for a body altered by one byte, anywhere", () => {
    const mark = key.mark(subject, body, 0);
    for (const i of [0, Math.floor(body.length / 2), body.length - 1]) {
      const altered = Uint8Array.from(body);
      altered[i] = (altered[i] as number) ^ 1;
      assert.equal(key.check(subject, altered, mark), "mismatch", `byte ${i}`);
    }
  });

  it("fails when its position is changed", () => {
    const mark = key.mark(subject, body, 7);
    assert.equal(key.check(subject, body, mark.replace(".7.", ".8.")), "mismatch");
  });

  it("fails when made with another key, and says so", () => {
    const other = EventKey.generate();
    assert.notEqual(other.id, key.id);
    assert.equal(key.check(subject, body, other.mark(subject, body, 0)), "other-key");
  });

  it("fails when moved to another subject (another aggregate)", () => {
    const mark = key.mark(subject, body, 0);
    assert.equal(key.check("corral.evt.command.m-2", body, mark), "mismatch");
    // Moving bytes between subject and body does not help: the zero bytes separate them.
    assert.equal(
      key.check("corral.evt.command.m-", Buffer.concat([Buffer.from("1"), body]), mark),
      "mismatch",
    );
  });

  it("is missing or malformed when absent or not shaped like a mark", () => {
    const mark = key.mark(subject, body, 0);
    assert.equal(key.check(subject, body, undefined), "missing");
    assert.equal(key.check(subject, body, ""), "missing");
    assert.equal(key.check(subject, body, `v5${mark.slice(2)}`), "malformed");
    assert.equal(key.check(subject, body, mark.slice(0, -1)), "malformed");
    assert.equal(key.check(subject, body, mark.replace(".0.", ".00.")), "malformed");
    // One MAC, one spelling: the same bytes in another base64 form are refused.
    const last = mark.at(-1) as string;
    const noncanonical = `${mark.slice(0, -1)}${String.fromCharCode(last.charCodeAt(0) + 1)}`;
    assert.equal(key.check(subject, body, noncanonical), "malformed");
    const macAt = mark.length - 22;
    assert.equal(key.check(subject, body, `${mark.slice(0, macAt)}+${mark.slice(macAt + 1)}`), "malformed");
    const flipped = `${mark.slice(0, macAt)}${mark[macAt] === "A" ? "B" : "A"}${mark.slice(macAt + 1)}`;
    assert.equal(key.check(subject, body, flipped), "mismatch");
  });
});

describe("a batch of marks checked together", () => {
  const key = EventKey.generate();
  const other = EventKey.generate();
  const encoder = new TextEncoder();
  type Case = {
    subject: string;
    body: Uint8Array;
    mark: string | undefined;
    lastLine: boolean;
    version?: string;
    spoil?: string;
  };

  /** A mark as a writer would make it, or spoiled one of the ways a forger might. */
  const aCase = fc
    .record({
      id: fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/),
      // Most in one v4 hash chunk (1 KiB), some over several.
      body: fc.oneof(fc.uint8Array({ maxLength: 700 }), fc.uint8Array({ minLength: 900, maxLength: 2_500 })),
      prev: fc.oneof(fc.nat(), fc.constant(2 ** 40 + 3)),
      version: fc.constantFrom("v4", "v4", "v3", "v2"),
      spoil: fc.constantFrom("none", "none", "body", "tag", "prev", "subject", "key", "missing", "shape"),
      lastLine: fc.boolean(),
    })
    .map(({ id, body, prev, version, spoil, lastLine }): Case => {
      const subject = `corral.evt.command.${id}`;
      const by = spoil === "key" ? other : key;
      let mark: string | undefined =
        version === "v4"
          ? by.mark(subject, body, prev)
          : version === "v3"
            ? `v3.${by.id}.${prev}.${by.macV3(subject, prev, body)}`
            : `v2.${by.id}.${prev}.${by.macV2(subject, prev, body)}`;
      if (spoil === "tag") mark = `${mark.slice(0, -2)}${mark.at(-2) === "A" ? "B" : "A"}${mark.at(-1)}`;
      if (spoil === "prev") mark = mark.replace(`.${prev}.`, `.${prev + 1}.`);
      if (spoil === "shape") mark = mark.slice(0, -1);
      if (spoil === "missing") mark = undefined;
      const read = spoil === "body" ? Uint8Array.from([...body, 1]) : body;
      return {
        subject: spoil === "subject" ? `${subject}x` : subject,
        body: read,
        mark,
        lastLine,
        version,
        spoil,
      };
    });

  /** The message's raw bytes as delivered: a header block (the mark last, or not), then the body. */
  function raw({ mark, lastLine, body }: Case): { bytes: Uint8Array; hdr: number } {
    const lines = ["NATS/1.0", "Nats-Msg-Id: x"];
    if (mark !== undefined) lines.splice(lastLine ? 2 : 1, 0, `Corral-Mark: ${mark}`);
    const head = encoder.encode(`${lines.join("\r\n")}\r\n\r\n`);
    const bytes = new Uint8Array(head.length + body.length);
    bytes.set(head);
    bytes.set(body, head.length);
    return { bytes, hdr: head.length };
  }

  /** The cases copied into a ring as messages are, and their spans (mark-ring.ts SPAN fields). */
  function staged(ring: MarkRing, cases: Case[]): Uint32Array {
    const spans = new Uint32Array(SPAN * cases.length);
    cases.forEach((c, i) => {
      const { bytes, hdr } = raw(c);
      const subject = encoder.encode(c.subject);
      const at = ring.address(ring.put(subject, bytes));
      spans.set([at, subject.length, at + subject.length, hdr, bytes.length], SPAN * i);
    });
    return spans;
  }

  it("gives each message the verdict and prev that checking it alone gives", () => {
    const ring = MarkRing.detached();
    fc.assert(
      fc.property(fc.array(aCase, { minLength: 1, maxLength: 60 }), (cases) => {
        const spans = staged(ring, cases);
        const before = ring.checkedInModule;
        const { verdicts, prevs } = ring.check(key, spans, cases.length);
        cases.forEach((c, i) => {
          const alone = key.verify(c.subject, c.body, c.mark);
          const verdict = VERDICTS[verdicts[i] as number];
          assert.equal(verdict, typeof alone === "number" ? "valid" : alone, `message ${i}`);
          if (typeof alone === "number") assert.equal(prevs[i], alone);
        });
        // Every v4 and v3 mark of our key where the writer puts it was checked by the module (the
        // rest by mark-bytes.ts's checker): proof both ran.
        const inModule = cases.filter(
          (c) => c.version !== "v2" && c.lastLine && !["key", "missing", "shape"].includes(c.spoil ?? ""),
        ).length;
        assert.equal(ring.checkedInModule - before, inModule);
      }),
      { numRuns: 150 },
    );
  });

  it("checks an event larger than the module takes, and refuses a subject corral never writes", () => {
    const ring = MarkRing.detached();
    const body = encodeEvent(
      makeEvent({ kind: "command", id: "big" }, "CommandCreated", {
        agentId: "agent-1",
        action: "echo",
        payload: { text: "x".repeat(300_000) },
      }),
    );
    const cases: Case[] = [
      {
        subject: "corral.evt.command.big",
        body,
        mark: key.mark("corral.evt.command.big", body, 4),
        lastLine: true,
      },
      {
        subject: "corral.evt.command.big",
        body: Uint8Array.from([...body.subarray(0, -1), 0]),
        mark: key.mark("corral.evt.command.big", body, 4),
        lastLine: true,
      },
      {
        subject: "corral.evt.command.b\u0131",
        body,
        mark: key.mark("corral.evt.command.big", body, 4),
        lastLine: true,
      },
    ];
    const spans = staged(ring, cases);
    const { verdicts, prevs } = ring.check(key, spans, cases.length);
    assert.deepEqual([...verdicts], [0, 4, UNMACABLE]);
    assert.equal(prevs[0], 4);
    assert.equal(ring.checkedInModule, 0, "over 256 KB: mark-bytes.ts's checker");
  });
});

describe("the event key file", () => {
  it("is made on first start with mode 0600, then read back; CORRAL_EVENT_KEY_FILE wins", () => {
    const dir = join(tempDir("key-"), "state");
    const first = loadOrCreateEventKey(dir);
    assert.equal(first.created, true);
    assert.equal(statSync(first.file).mode & 0o777, 0o600);
    const again = loadOrCreateEventKey(dir);
    assert.equal(again.created, false);
    assert.equal(again.key.id, first.key.id);
    const elsewhere = join(tempDir("key-env-"), "k");
    process.env[KEY_FILE_ENV] = elsewhere;
    try {
      const viaEnv = loadOrCreateEventKey(dir);
      assert.equal(viaEnv.file, elsewhere);
      assert.notEqual(viaEnv.key.id, first.key.id);
    } finally {
      delete process.env[KEY_FILE_ENV];
    }
  });

  it("refuses a key others can read, and one that is not 32 bytes", () => {
    const dir = tempDir("key-bad-");
    const { file } = loadOrCreateEventKey(dir);
    chmodSync(file, 0o644);
    assert.throws(() => readEventKey(file), KeyFileError);
    const short = join(dir, "short.key");
    writeFileSync(short, `${Buffer.alloc(16).toString("base64")}\n`, { mode: 0o600 });
    assert.throws(() => readEventKey(short), /not 32 bytes/);
    assert.equal(readEventKey(join(dir, "none.key")), undefined);
  });
});

describe("marks through the store, against a real nats-server", () => {
  let t: TestNats;
  let writer: EventStore;
  const key = EventKey.generate();
  before(async () => {
    t = await startTestNats();
    writer = await EventStore.open(await t.connect(), { integrity: { key } });
  });
  after(async () => {
    writer.close();
    await t.cleanup();
  });

  /** A plain client's publish: no corral code, only the headers given. */
  async function publish(subject: string, body: Uint8Array, mark?: string): Promise<number> {
    const js = jetstream(await t.connect("forger"));
    const h = headers();
    if (mark) h.set(MARK_HEADER, mark);
    return (await js.publish(subject, body, { headers: h })).seq;
  }

  async function readAll(store: EventStore, filter: string, prevs?: false): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for await (const b of store.read({ filter, prevs })) out.push(...b);
    return out;
  }

  it("a writer marks its appends; each way of reading sees forged ones as forged, never as events", async () => {
    const ref: AggregateRef = { kind: "command", id: "forge-1" };
    const subject = eventSubject(ref);
    const good = await writer.append(ref, [created(ref)], 0);
    const stored = await writer.jsm.streams.getMessage(writer.stream, { seq: good.lastSeq });
    const goodMark = stored?.header?.get(MARK_HEADER) ?? "";
    assert.match(goodMark, new RegExp(`^v4\\.${key.id}\\.0\\.[A-Za-z0-9_-]{22}$`));

    const sent = makeEvent(ref, "CommandSent", { attempt: 1 });
    const body = encodeEvent(sent);
    const otherRef: AggregateRef = { kind: "command", id: "forge-2" };
    const otherGood = await writer.append(otherRef, [created(otherRef)], 0);
    const otherMark =
      (await writer.jsm.streams.getMessage(writer.stream, { seq: otherGood.lastSeq }))?.header?.get(
        MARK_HEADER,
      ) ?? "";
    const forged = {
      unmarked: await publish(subject, body),
      badMac: await publish(subject, body, `${goodMark.slice(0, -22)}${"A".repeat(22)}`),
      otherKey: await publish(subject, body, EventKey.generate().mark(subject, body, good.lastSeq)),
      moved: await publish(subject, encodeEvent(created(otherRef)), otherMark),
    };

    const reader = await EventStore.open(await t.connect(), { integrity: { key } });
    const records = await readAll(reader, subject);
    assert.equal(records[0]?.event?.type, "CommandCreated", "the writer's own event reads as itself");
    const bySeq = new Map(records.map((r) => [r.seq, r]));
    for (const [what, seq] of Object.entries(forged)) {
      const r = bySeq.get(seq);
      assert.ok(r?.error instanceof ForgedEventError, `${what}: range read says forged`);
      assert.equal(r.error.reason, "forged");
      assert.equal(r.event, undefined, `${what}: no event`);
      const one = await reader.get(seq);
      assert.equal(one?.error?.reason, "forged", `${what}: get says forged`);
    }
    assert.equal(bySeq.get(forged.otherKey)?.error?.message.includes("another key"), true);
    assert.equal((bySeq.get(forged.unmarked)?.error as ForgedEventError | undefined)?.type, "CommandSent");

    // Following live checks too.
    const ac = new AbortController();
    const followed: StoredRecord[] = [];
    for await (const r of reader.follow({ filter: subject, fromSeq: 1 }, ac.signal)) {
      followed.push(r);
      if (r.seq >= forged.moved) ac.abort();
    }
    assert.deepEqual(
      followed.filter((r) => r.error?.reason === "forged").map((r) => r.seq),
      Object.values(forged),
    );

    // Without the key: unmarked is forged, marked (even wrongly) is unverified, never "valid".
    const blind = await EventStore.open(await t.connect(), { integrity: "unverified" });
    const seen = new Map((await readAll(blind, subject)).map((r) => [r.seq, r]));
    assert.equal(seen.get(forged.unmarked)?.error?.reason, "forged");
    assert.equal(seen.get(good.lastSeq)?.unverified, true);
    assert.equal(seen.get(forged.badMac)?.unverified, true);
    reader.close();
    blind.close();
  });

  it("a burst of appends is marked together; one that cannot be marked fails alone", async () => {
    const nc = await t.connect("burst");
    const pub = new PipelinedPublisher(nc);
    try {
      const subjects = ["burst-1", "burst-2", "burst-3"].map((id) => eventSubject({ kind: "command", id }));
      const bodies = subjects.map((_, i) =>
        encodeEvent(makeEvent({ kind: "command", id: `burst-${i}` }, "CommandSent", { attempt: i + 1 })),
      );
      // Published in one turn: one MAC call marks them all; the non-ASCII one cannot be marked.
      const results = await Promise.allSettled([
        ...subjects.map((s, i) =>
          pub.publish(s, bodies[i] as Uint8Array, `burst-${i}-${Math.random()}`, 0, key),
        ),
        pub.publish(
          "corral.evt.command.b\u0131",
          bodies[0] as Uint8Array,
          `burst-x-${Math.random()}`,
          0,
          key,
        ),
      ]);
      assert.equal(results[3]?.status, "rejected");
      assert.match(String((results[3] as PromiseRejectedResult).reason), /cannot mark/);
      for (const [i, r] of results.slice(0, 3).entries()) {
        assert.equal(r.status, "fulfilled", `publish ${i}`);
        const seq = (r as PromiseFulfilledResult<{ seq: number }>).value.seq;
        const stored = await writer.jsm.streams.getMessage(writer.stream, { seq });
        assert.equal(
          key.check(subjects[i] as string, bodies[i] as Uint8Array, stored?.header?.get(MARK_HEADER)),
          "valid",
        );
      }
    } finally {
      pub.close();
    }
  });

  it("a long read checks its marks in its connection's ring, and catches each forgery there too", async () => {
    const nc = await t.connect("bulk");
    const pub = new PipelinedPublisher(nc);
    const ref: AggregateRef = { kind: "command", id: "bulk-1" };
    const subject = eventSubject(ref);
    // ~3 KB each: the read passes more bytes than the ring holds, so batches are checked before
    // the ring writes over them.
    const appendReal = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const body = encodeEvent(
          makeEvent(ref, "CommandCreated", {
            agentId: "agent-1",
            action: "echo",
            payload: { text: "x".repeat(3_000), i },
          }),
        );
        await pub.publish(subject, body, `bulk-${Math.random()}`, undefined, key.mark(subject, body, 0));
      }
    };
    try {
      await appendReal(1_500);
      const body = encodeEvent(makeEvent(ref, "CommandSent", { attempt: 9_999 }));
      const realMark = key.mark(subject, body, 0);
      const other = EventKey.generate();
      const forged = {
        unmarked: await publish(subject, body),
        badMac: await publish(subject, body, `${realMark.slice(0, -22)}${"A".repeat(22)}`),
        otherKey: await publish(subject, body, other.mark(subject, body, 0)),
        malformed: await publish(subject, body, `${realMark} `.replace(".0.", ".00.")),
        moved: await publish(subject, body, key.mark(`${subject}x`, body, 0)),
        altered: await publish(
          subject,
          Uint8Array.from(body, (b, i) => (i === 9 ? b ^ 1 : b)),
          realMark,
        ),
        // Under a v2 mark (written before v3) too.
        v2Altered: await publish(
          subject,
          body,
          `v2.${key.id}.0.${key.macV2(subject, 0, encodeEvent(created(ref)))}`,
        ),
      };
      // A real mark naming another position is read with that position (the actor host checks it).
      const otherPrev = await publish(subject, body, key.mark(subject, body, 1));
      // A v2 mark (written before v3) still reads as valid.
      const v2Good = await publish(subject, body, `v2.${key.id}.0.${key.macV2(subject, 0, body)}`);
      await appendReal(500);

      const reader = await EventStore.open(nc, { integrity: { key } });
      const ring = MarkRing.of(nc);
      const before = { module: ring.checkedInModule, early: ring.earlyChecks };
      const records = await readAll(reader, subject);
      // A projection's read (no prevs wanted): the same verdicts, only no record says where it follows.
      const unplaced = await readAll(reader, subject, false);
      reader.close();
      assert.equal(records.length, 2_009);
      assert.deepEqual(
        unplaced.map((r) => [r.seq, r.event?.type, r.error?.reason, r.prev]),
        records.map((r) => [r.seq, r.event?.type, r.error?.reason, undefined]),
      );
      assert.ok(ring.tapping, "the connection's frame reader fills the ring");
      assert.ok(ring.checkedInModule - before.module >= 2_000, "the marks were checked by the ring's module");
      assert.ok(ring.earlyChecks > before.early, "some batches were checked before the ring wrote over them");
      const forgedSeqs = new Set(Object.values(forged));
      for (const r of records) {
        if (forgedSeqs.has(r.seq)) {
          assert.equal(r.error?.reason, "forged", `seq ${r.seq} is forged`);
          assert.equal(r.event, undefined);
        } else {
          const type = r.seq === otherPrev || r.seq === v2Good ? "CommandSent" : "CommandCreated";
          assert.equal(r.event?.type, type, `seq ${r.seq} reads as itself`);
          assert.equal(r.prev, r.seq === otherPrev ? 1 : 0);
        }
      }
      const bySeq = new Map(records.map((r) => [r.seq, r]));
      assert.match(
        bySeq.get(forged.otherKey)?.error?.message ?? "",
        new RegExp(`another key \\(${other.id}\\)`),
      );
      assert.match(bySeq.get(forged.malformed)?.error?.message ?? "", /not a corral mark/);
      assert.equal(bySeq.get(v2Good)?.event?.type, "CommandSent", "a v2 mark is checked too");
      assert.match(bySeq.get(forged.v2Altered)?.error?.message ?? "", /does not match/);
      assert.match(bySeq.get(forged.unmarked)?.error?.message ?? "", /no Corral-Mark/);
      assert.match(bySeq.get(forged.altered)?.error?.message ?? "", /does not match/);
    } finally {
      pub.close();
    }
  });

  it("finds the mark in the raw header block exactly as the client's own parser does", async () => {
    const nc = await t.connect("raw");
    const sub = nc.subscribe("raw.mark", { max: 3 });
    const h = headers();
    h.set("Nats-Msg-Id", "x");
    h.set(MARK_HEADER, "v1.abcdef01.mark");
    h.set("Other", "y");
    nc.publish("raw.mark", new Uint8Array([1, 2]), { headers: h });
    nc.publish("raw.mark", new Uint8Array([3]));
    // As corral's writer sets it: last, canonical (the scan's fast path).
    const real = key.mark("raw.mark", new Uint8Array([4]), 12);
    const last = headers();
    last.set("Nats-Msg-Id", "y");
    last.set(MARK_HEADER, real);
    nc.publish("raw.mark", new Uint8Array([4]), { headers: last });
    const got = [];
    for await (const m of sub) got.push(m);
    assert.equal(markOf(got[0] as never), "v1.abcdef01.mark");
    assert.equal(got[0]?.headers?.get(MARK_HEADER), "v1.abcdef01.mark");
    assert.equal(markOf(got[1] as never), undefined);
    assert.equal(markOf(got[2] as never), real);
    assert.equal(key.check("raw.mark", got[2]?.data as Uint8Array, markOf(got[2] as never)), "valid");
  });

  it("an actor host never folds a forged event, and appends after it (its sequence is the subject's last)", async () => {
    const nc = await t.connect("host");
    const store = await EventStore.open(nc, { integrity: { key } });
    const host = new ActorHost({
      store,
      aggregates: [commandAggregate],
      effects: { command: Object.fromEntries(commandAggregate.effects.map((n) => [n, async () => {}])) },
      timers: false,
    });
    const ref: AggregateRef = { kind: "command", id: "host-forge" };
    await host.send(ref, {
      type: "CommandCreated",
      data: { agentId: "agent-1", action: "echo", payload: {} },
    });
    // A forged completion: were it folded, the command would be done.
    const seq = await publish(
      eventSubject(ref),
      encodeEvent(makeEvent(ref, "CommandCancelled", { reason: "forged" })),
    );
    const fresh = new ActorHost({
      store,
      aggregates: [commandAggregate],
      effects: { command: Object.fromEntries(commandAggregate.effects.map((n) => [n, async () => {}])) },
      timers: false,
    });
    const [view] = await fresh.recover("command", (v) => v.ref.id === ref.id);
    assert.equal(view?.seq, seq, "recovery takes the forged record's sequence as the last one");
    assert.equal(fresh.forged >= 1, true);
    const before = await fresh.get(ref);
    assert.notEqual(before.status, "done");
    const sent = await fresh.send(ref, { type: "CommandSent", data: { attempt: 1 } });
    assert.ok(sent.seq > seq, "the next append names the forged record's sequence and is stored");
    // And through load() (no recovery): the same.
    const third = new ActorHost({
      store,
      aggregates: [commandAggregate],
      effects: { command: Object.fromEntries(commandAggregate.effects.map((n) => [n, async () => {}])) },
      timers: false,
    });
    await publish(eventSubject(ref), encodeEvent(makeEvent(ref, "CommandCancelled", { reason: "again" })));
    // Were the forged cancel folded, the command would be final and this input refused.
    const acked = await third.send(ref, { type: "CommandAcked", data: { attempt: 1 } });
    assert.equal(acked.status, "active");
    assert.equal(third.forged, 2, "load() met both forged records");
    await Promise.all([host.close(0), fresh.close(0), third.close(0)]);
    store.close();
  });

  it("snapshots are marked too: a forged or moved one is refused and the actor is replayed instead", async () => {
    const nc = await t.connect("snapshots");
    const snapshots = await SnapshotStore.open(nc, "corral_snapshots", 1, { key });
    const ref: AggregateRef = { kind: "command", id: "snap-1" };
    const snap = { seq: 1, version: 1, value: "x", context: { n: 1 } };
    await snapshots.put(ref, snap);
    assert.deepEqual(await snapshots.get(ref), snap);
    // A forger's own value in the bucket: plain, or a real marked value moved to another aggregate.
    const kv = await new Kvm(await t.connect("forger")).open("corral_snapshots");
    const real = (await kv.get("command.snap-1"))?.value as Uint8Array;
    await kv.put("command.snap-2", real);
    await assert.rejects(snapshots.get({ kind: "command", id: "snap-2" }), UnmarkedSnapshotError);
    await kv.put("command.snap-1", encode({ ...snap, value: "forged" }));
    await assert.rejects(snapshots.get(ref), UnmarkedSnapshotError);

    // The actor host: a forged snapshot claiming a finished command is ignored, its history replayed.
    const store = await EventStore.open(nc, { integrity: { key } });
    const effects = { command: Object.fromEntries(commandAggregate.effects.map((n) => [n, async () => {}])) };
    const host = new ActorHost({ store, snapshots, aggregates: [commandAggregate], effects, timers: false });
    const cref: AggregateRef = { kind: "command", id: "snap-host" };
    const first = await host.send(cref, {
      type: "CommandCreated",
      data: { agentId: "agent-1", action: "echo", payload: {} },
    });
    await kv.put(
      "command.snap-host",
      encode({
        seq: first.seq,
        version: commandAggregate.version,
        value: "cancelled",
        context: first.context,
      }),
    );
    const fresh = new ActorHost({ store, snapshots, aggregates: [commandAggregate], effects, timers: false });
    const sent = await fresh.send(cref, { type: "CommandSent", data: { attempt: 1 } });
    assert.equal(sent.status, "active", "the forged final state was not believed");
    await Promise.all([host.close(0), fresh.close(0)]);
    store.close();
  });

  it("projection checkpoints are marked too: a forged one is ignored, and a reader without the key uses none", async () => {
    const nc = await t.connect("checkpoints");
    const cps = await CheckpointStore.open(nc, { bucket: "cp_marks", integrity: { key } });
    const cp = { seq: 7, version: 1, state: { n: 1 } };
    assert.equal(await cps.put("wv", cp), "written");
    assert.deepEqual(await cps.get("wv"), cp);
    const kv = await new Kvm(await t.connect("forger")).open("cp_marks");
    await kv.put("other", (await kv.get("wv"))?.value as Uint8Array); // a real mark, moved
    assert.equal(await cps.get("other"), undefined);
    await kv.put("plain", encode(cp));
    assert.equal(await cps.get("plain"), undefined);
    const blind = await CheckpointStore.open(nc, { bucket: "cp_marks", integrity: "unverified" });
    assert.equal(await blind.get("wv"), undefined, "cannot be checked without the key: not used");
    const other = await CheckpointStore.open(nc, {
      bucket: "cp_marks",
      integrity: { key: EventKey.generate() },
    });
    assert.equal(await other.get("wv"), undefined);
  });

  it("a real event copied to a later position on its subject (a replay) is not folded by the actor host", async () => {
    const nc = await t.connect("replay");
    const store = await EventStore.open(nc, { integrity: { key } });
    const effects = { command: Object.fromEntries(commandAggregate.effects.map((n) => [n, async () => {}])) };
    const host = new ActorHost({ store, aggregates: [commandAggregate], effects, timers: false });
    const ref: AggregateRef = { kind: "command", id: "replay-1" };
    const created = await host.send(ref, {
      type: "CommandCreated",
      data: { agentId: "agent-1", action: "echo", payload: {} },
    });
    await host.send(ref, { type: "CommandSent", data: { attempt: 1 } });
    // Forged records of the earlier tests on other command subjects: counted by recovery too.
    const baseline = new ActorHost({ store, aggregates: [commandAggregate], effects, timers: false });
    await baseline.recover("command", () => false);
    // The stored message as a reader sees it, published again as is: body and mark unchanged.
    const m = await store.jsm.streams.getMessage(store.stream, { seq: created.seq });
    const copy = await publish(eventSubject(ref), m?.data as Uint8Array, m?.header?.get(MARK_HEADER));
    const read = await store.get(copy);
    assert.equal(read?.event?.type, "CommandCreated", "the copy's mark is valid for its bytes");
    assert.equal(read?.prev, 0, "… and says it follows sequence 0");

    const fresh = new ActorHost({ store, aggregates: [commandAggregate], effects, timers: false });
    const [view] = await fresh.recover("command", (v) => v.ref.id === ref.id);
    assert.equal(fresh.forged, baseline.forged + 1, "recovery saw the replay");
    assert.equal(view?.seq, copy, "and took its sequence as the subject's last");
    assert.equal(view?.value, "sent", "without folding it");
    const loaded = new ActorHost({ store, aggregates: [commandAggregate], effects, timers: false });
    const acked = await loaded.send(ref, { type: "CommandAcked", data: { attempt: 1 } });
    assert.equal(loaded.forged, 1, "load() saw it too");
    assert.ok(acked.seq > copy, "and appends after it");
    await Promise.all([host.close(0), fresh.close(0), loaded.close(0), baseline.close(0)]);
    store.close();
  });
});
