import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { encodeFrame, FrameDecoder, type FrameError } from "../src/agentd/frames.ts";
import { parseFromAgent, parseToAgent } from "../src/agentd/protocol.ts";

/** Cuts `bytes` at the given offsets (any order, any repeats): the chunks a socket might hand over. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

function header(length: number): Uint8Array {
  const h = new Uint8Array(4);
  new DataView(h.buffer).setUint32(0, length);
  return h;
}

// msgpack-safe values: what a frame carries (maps with string keys, bytes, numbers, strings, …).
const value = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.string(),
    fc.integer(),
    // -0 is sent as the integer 0 (msgpack has no negative zero integer): not a framing matter.
    fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 64 }),
  ),
  node: fc.oneof({ depthSize: "small" }, tie("leaf"), tie("array"), tie("map")),
  array: fc.array(tie("node"), { maxLength: 5 }),
  map: fc.dictionary(
    fc.string().filter((k) => k !== "__proto__"),
    tie("node"),
    { maxKeys: 5, noNullPrototype: true },
  ),
})).map;

describe("agentd frames (src/agentd/frames.ts)", () => {
  it("valid frames split at random chunk boundaries come back whole and in order", () => {
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 8 }), fc.array(fc.nat()), (msgs, cuts) => {
        const stream = concat(msgs.map((m) => encodeFrame(m)));
        const decoder = new FrameDecoder();
        const got: unknown[] = [];
        for (const chunk of split(stream, cuts)) {
          const r = decoder.push(chunk);
          assert.equal(r.error, undefined);
          got.push(...r.frames);
        }
        assert.deepEqual(got, msgs);
      }),
      { numRuns: 300 },
    );
  });

  it("never throws on random bytes; an error is typed, sticky, and frames before it are kept", () => {
    const codes = new Set<FrameError["code"]>(["frame_too_large", "bad_length", "bad_msgpack"]);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.array(fc.nat()), (bytes, cuts) => {
        const decoder = new FrameDecoder(1024);
        let error: FrameError | undefined;
        for (const chunk of split(bytes, cuts)) {
          const r = decoder.push(chunk);
          if (error) {
            assert.deepEqual(r, { frames: [], error });
          } else if (r.error) {
            assert.ok(codes.has(r.error.code), r.error.code);
            error = r.error;
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("random bytes inside a well-formed length never throw either (the msgpack decoder's turn)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 512 }), (body) => {
        const r = new FrameDecoder().push(concat([header(body.length), body]));
        if (r.error) assert.equal(r.error.code, "bad_msgpack");
        else assert.equal(r.frames.length, 1);
      }),
      { numRuns: 2000 },
    );
  });

  it("a length over the limit is frame_too_large before its body arrives", () => {
    const decoder = new FrameDecoder(1024);
    const ok = encodeFrame({ t: "ping" });
    const r = decoder.push(concat([ok, header(1025)]));
    assert.deepEqual(r.frames, [{ t: "ping" }]);
    assert.deepEqual(r.error, { code: "frame_too_large", length: 1025, max: 1024 });
    assert.deepEqual(decoder.push(ok), { frames: [], error: r.error });
    // The default limit is 1 MiB.
    assert.equal(new FrameDecoder().push(header(1024 * 1024 + 1)).error?.code, "frame_too_large");
    assert.equal(new FrameDecoder().push(header(1024 * 1024)).error, undefined);
  });

  it("a zero length is bad_length; bytes that are not msgpack are bad_msgpack", () => {
    assert.deepEqual(new FrameDecoder().push(header(0)).error, { code: "bad_length", length: 0 });
    const notMsgpack = concat([header(1), Uint8Array.of(0xc1)]); // 0xc1: never used in msgpack
    assert.equal(new FrameDecoder().push(notMsgpack).error?.code, "bad_msgpack");
    const trailing = concat([header(2), Uint8Array.of(0x01, 0x02)]); // two values in one frame
    assert.equal(new FrameDecoder().push(trailing).error?.code, "bad_msgpack");
  });

  it("encodeFrame refuses a message over the limit instead of sending it", () => {
    assert.throws(() => encodeFrame({ data: new Uint8Array(2000) }, 1024), RangeError);
  });
});

describe("agentd protocol (src/agentd/protocol.ts)", () => {
  it("parses each CP message and names what is wrong with a bad one", () => {
    const exec = { t: "exec", id: "c1", argv: ["ls"], stdin: new Uint8Array([1]), timeoutMs: 10 };
    assert.deepEqual(parseToAgent(exec), { ok: true, msg: exec });
    assert.deepEqual(parseToAgent({ t: "exec", id: "c1", argv: [] }), {
      ok: false,
      error: "exec.argv: Too small: expected array to have >=1 items",
    });
    assert.deepEqual(parseToAgent({ t: "nope" }), { ok: false, error: 't: unknown message type "nope"' });
    assert.deepEqual(parseToAgent([1]), { ok: false, error: "a frame must be a msgpack map" });
    assert.deepEqual(parseToAgent({ t: "ping", x: 1 }), { ok: false, error: 'ping: Unrecognized key: "x"' });
    assert.deepEqual(parseToAgent({ t: "exec", id: "c", argv: ["x"], stdin: "text" }), {
      ok: false,
      error: "exec.stdin: expected bytes (msgpack bin)",
    });
  });

  it("checks an op's args against that op", () => {
    const git = parseToAgent({ t: "op", id: "g", op: "git", args: { repo: "-u", dir: "../x" } });
    assert.deepEqual(git, {
      ok: false,
      error: "op git: args.repo: must not start with '-'; args.dir: must be relative to the home, no '..'",
    });
    assert.deepEqual(parseToAgent({ t: "op", id: "g", op: "rm", args: {} }), {
      ok: false,
      error: 'op: unknown op "rm"',
    });
    assert.deepEqual(parseToAgent({ t: "op", id: "a", op: "agent-ready", args: { argv: ["sh"] } }), {
      ok: false,
      error: 'op agent-ready: args: Unrecognized key: "argv"',
    });
    const cfg = {
      t: "op",
      id: "c",
      op: "config",
      args: { files: [{ path: "a/b", content: "x", mode: 0o600 }] },
    };
    assert.deepEqual(parseToAgent(cfg), { ok: true, msg: cfg });
    const ssh = { t: "op", id: "s", op: "ssh", args: { knownHosts: ["h ssh-ed25519 AAA\nevil"] } };
    assert.deepEqual(parseToAgent(ssh), { ok: false, error: "op ssh: args.knownHosts.0: must be one line" });
  });

  it("parses agentd's messages for the CP", () => {
    const done = {
      t: "done",
      id: "c1",
      exitCode: 0,
      durationMs: 3,
      stdoutTail: new Uint8Array(),
      stderrTail: new Uint8Array(),
      truncated: false,
      replayed: true,
    };
    assert.deepEqual(parseFromAgent(done), { ok: true, msg: done });
    assert.equal(parseFromAgent({ ...done, exitCode: "0" }).ok, false);
    const ack = { t: "hello-ack", agentId: "a", poolId: "p", initDone: ["git"], commandRunning: false };
    assert.deepEqual(parseFromAgent({ ...ack, commandStarts: 0 }), {
      ok: true,
      msg: { ...ack, commandStarts: 0 },
    });
    assert.equal(parseFromAgent({ ...ack, commandStarts: 0, initDone: ["rm"] }).ok, false);
  });
});
