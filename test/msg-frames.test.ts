import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { Parser } from "@nats-io/nats-core/internal";
import fc from "fast-check";
import { fastParser, readFramesFast } from "../src/nats/msg-frames.ts";
import { headers } from "../src/vendor/nats.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";

/** What a parser hands the client, as plain values; an error ends it. */
type Seen = (
  | string
  | { sid: number; hdr: number; size: number; subject: string; reply?: string; data: string }
)[];

const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString("latin1"));

/** Feeds `chunks` to a nats.js parser, with the fast path or without, and records what it dispatches. */
function run(chunks: Uint8Array[], fast: boolean): { seen: Seen; fastFrames: number } {
  const seen: Seen = [];
  // biome-ignore lint/suspicious/noExplicitAny: the dispatcher nats.js's parser calls (its ProtocolHandler)
  const dispatcher = { push: (e: any) => record(e) };
  // biome-ignore lint/suspicious/noExplicitAny: a bare nats.js parser, built as its ProtocolHandler builds it
  const parser = new Parser(dispatcher as any) as any;
  const proto = Object.getPrototypeOf(parser);
  const slow = proto.parse;
  let inSlow = false;
  let msgs = 0;
  let slowMsgs = 0;
  if (fast) {
    // Counts the messages nats.js's own parse hands on (the fast path calls the class's parse).
    proto.parse = function (this: unknown, b: Uint8Array) {
      inSlow = true;
      try {
        return slow.call(this, b);
      } finally {
        inSlow = false;
      }
    };
    fastParser(parser);
  }
  // biome-ignore lint/suspicious/noExplicitAny: see above
  function record(e: any) {
    if (e.kind === 2) {
      msgs++;
      if (inSlow) slowMsgs++;
      const m = e.msg;
      seen.push({
        sid: m.sid,
        hdr: m.hdr,
        size: m.size,
        subject: text(m.subject) as string,
        ...(m.reply === undefined ? {} : { reply: text(m.reply) }),
        data: text(e.data) as string,
      });
    } else seen.push(`${e.kind}:${text(e.data) ?? ""}`);
  }
  try {
    for (const c of chunks) parser.parse(c);
  } catch (err) {
    // nats.js quotes the rest of the chunk it failed in; the fast path hands it a line at a time.
    seen.push(`error: ${(err as Error).message.split("\n")[0]}`);
  } finally {
    proto.parse = slow;
  }
  return { seen, fastFrames: msgs - slowMsgs };
}

const token = fc.stringMatching(/^[A-Za-z0-9_.$>*-]{1,40}$/);
const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
const bytes = fc.uint8Array({ maxLength: 300 });
const space = fc.constantFrom(" ", " ", " ", "  ", "\t");

/** One protocol operation as a server might send it, now and then odd or broken. */
const op = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .record({
        subject: token,
        sid: fc.nat(99_999),
        reply: fc.option(token),
        hdr: bytes,
        body: bytes,
        sp: space,
      })
      .map(({ subject, sid, reply, hdr, body, sp }) => {
        const block = new Uint8Array([...latin1("NATS/1.0\r\n"), ...hdr, ...latin1("\r\n\r\n")]);
        const size = block.length + body.length;
        const line = `HMSG ${subject}${sp}${sid} ${reply === null ? "" : `${reply} `}${block.length} ${size}\r\n`;
        return new Uint8Array([...latin1(line), ...block, ...body, 13, 10]);
      }),
  },
  {
    weight: 4,
    arbitrary: fc
      .record({ subject: token, sid: fc.nat(99_999), reply: fc.option(token), body: bytes })
      .map(
        ({ subject, sid, reply, body }) =>
          new Uint8Array([
            ...latin1(`MSG ${subject} ${sid} ${reply === null ? "" : `${reply} `}${body.length}\r\n`),
            ...body,
            13,
            10,
          ]),
      ),
  },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(
        "PING\r\n",
        "PONG\r\n",
        "+OK\r\n",
        "-ERR 'Stale Connection'\r\n",
        'INFO {"server_id":"x"}\r\n',
      )
      .map(latin1),
  },
  // Accepted by nats.js, not by the fast path: lowercase, "\n" alone, something else after a payload.
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        "msg a.b 1 3\r\nxyz\r\n",
        "hmsg a 2 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
        "MSG a 1 2\nhi\r\n",
        "MSG a 1 2\r\nhi--\n",
        "MSG\ta\t\t1  2 \r\nhi\r\n",
      )
      .map(latin1),
  },
  // Broken: each must fail as nats.js fails it.
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        "MSG a x 2\r\nhi\r\n",
        "HMSG a 1 9 3\r\nabc\r\n",
        "MSG a 1\r\n",
        "MSG a b c d e 1\r\nx\r\n",
        "XYZ\r\n",
        "MSG a 1 99999999999999999\r\n",
        "HMSG a 1 -1 3\r\nabc\r\n",
        "MSG a\x01b 1 2\r\nhi\r\n",
        "MSG a 1234567890123456 1\r\nx\r\n",
        "MSG a 123456789012345 1\r\nx\r\n",
      )
      .map(latin1),
  },
);

/** `stream` cut at `cuts` (fractions of its length). */
function cut(stream: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((f) => Math.floor(f * stream.length)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const c of [...at, stream.length]) {
    if (c > from) out.push(Buffer.from(stream.subarray(from, c)));
    from = c;
  }
  return out;
}

describe("the message-frame fast path (src/nats/msg-frames.ts)", () => {
  it("hands on exactly what nats.js's parser hands on, and fails where it fails, for any stream cut anywhere", () => {
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 30 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
        (ops, cuts) => {
          const stream = new Uint8Array(ops.reduce((n, o) => n + o.length, 0));
          let at = 0;
          for (const o of ops) {
            stream.set(o, at);
            at += o.length;
          }
          const chunks = cut(stream, cuts);
          assert.deepEqual(run(chunks, true).seen, run(chunks, false).seen);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("tells a tap where each frame it reads lies in the tap's copy of its chunk", () => {
    let total = 0;
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 30 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
        (ops, cuts) => {
          const stream = Buffer.concat(ops);
          // The tap copies each chunk after the last, one byte apart (a place is never 0 by luck).
          const copy = new Uint8Array(stream.length + 2 * (cuts.length + 1));
          let used = 1;
          const tap = (chunk: Uint8Array) => {
            const at = used;
            copy.set(chunk, at);
            used += chunk.length + 1;
            return at;
          };
          let tapped = 0;
          const wrong: string[] = [];
          // biome-ignore lint/suspicious/noExplicitAny: the dispatcher nats.js's parser calls
          const dispatcher = { push: (e: any) => check(e) };
          // biome-ignore lint/suspicious/noExplicitAny: a bare nats.js parser, as in run()
          const parser = new Parser(dispatcher as any) as any;
          fastParser(parser, { tap });
          // biome-ignore lint/suspicious/noExplicitAny: see above
          function check(e: any) {
            const m = e.msg;
            if (e.kind !== 2 || m.subjectAt === undefined || m.subjectAt < 0) return;
            tapped++;
            const at = (from: number, n: number) =>
              Buffer.from(copy.subarray(from, from + n)).toString("latin1");
            if (at(m.subjectAt, m.subject.length) !== text(m.subject))
              wrong.push(`subject of frame ${tapped}`);
            if (at(m.dataAt, e.data.length) !== text(e.data)) wrong.push(`data of frame ${tapped}`);
          }
          try {
            for (const c of cut(stream, cuts)) parser.parse(c);
          } catch {
            // what nats.js's parser refuses is the first test's business
          }
          assert.deepEqual(wrong, []);
          total += tapped;
        },
      ),
      { numRuns: 500 },
    );
    assert.ok(total > 100, `frames read in one pass and placed: ${total}`);
  });

  it("takes whole frames itself: nats.js's parser sees only what is split or odd", () => {
    const frame = (i: number) =>
      latin1(`HMSG corral.evt.x.${i} 7 $JS.ACK.a.b.1.${i}.${i}.0.0 12 15\r\nNATS/1.0\r\n\r\nabc\r\n`);
    const stream = new Uint8Array(Array.from({ length: 100 }, (_, i) => [...frame(i)]).flat());
    const whole = run([Buffer.from(stream)], true);
    assert.equal(whole.seen.length, 100);
    assert.equal(whole.fastFrames, 100, "all 100 frames read by the fast path");
    const split = run(cut(stream, [0.5]), true);
    assert.deepEqual(split.seen, whole.seen);
    assert.equal(split.fastFrames, 99, "the frame cut in two goes to nats.js's parser");
  });

  describe("on a connection", () => {
    let t: TestNats;
    let nc: NatsConnection;
    before(async () => {
      t = await startTestNats();
      nc = await t.connect("msg-frames");
    });
    after(() => t.cleanup());

    it("every corral connection reads frames the fast way, also after a reconnect", async () => {
      // biome-ignore lint/suspicious/noExplicitAny: the client's internals, as msg-frames.ts reads them
      const protocol = (nc as any).protocol;
      const own = () => Object.hasOwn(protocol.parser, "parse");
      assert.ok(own(), "connectNats installed the fast path");
      assert.equal(readFramesFast(nc), true);
      const roundTrip = async () => {
        const got: { data: string; h?: string; n: number }[] = [];
        const sub = nc.subscribe("frames.>", {
          callback: (_e, m) => {
            got.push({ data: m.string(), h: m.headers?.get("X-Test"), n: m.data.length });
          },
        });
        const h = headers();
        h.set("X-Test", "yes");
        const big = "z".repeat(300_000); // larger than a socket chunk: split frames on the way
        nc.publish("frames.a", "small", { headers: h });
        nc.publish("frames.b", big);
        nc.publish("frames.c", "");
        await nc.flush();
        await new Promise((r) => setTimeout(r, 100));
        sub.unsubscribe();
        assert.deepEqual(
          got.map((g) => [g.data.length > 10 ? `${g.data.length}` : g.data, g.h, g.n]),
          [
            ["small", "yes", 5],
            ["300000", undefined, 300_000],
            ["", undefined, 0],
          ],
        );
      };
      await roundTrip();
      const before = protocol.parser;
      await t.server.stop();
      await t.server.start();
      for (let i = 0; i < 100 && (nc.isClosed() || protocol.parser === before || !nc.info); i++)
        await new Promise((r) => setTimeout(r, 100));
      await nc.flush();
      assert.notEqual(protocol.parser, before, "nats.js made a new parser for the new connection");
      assert.ok(own(), "and it has the fast path too");
      await roundTrip();
    });
  });
});
