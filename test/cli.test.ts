import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { InvalidArgumentError } from "commander";
import { parseAggregate, parseCount, parseSeq, parseSince, parseTypes } from "../src/cli/args.ts";
import { catalogue } from "../src/events/catalogue.ts";
import type { AggregateRef, Envelope } from "../src/events/envelope.ts";
import { natsAnswers } from "../src/nats/connect.ts";
import { freePort } from "../src/nats/server.ts";
import { MARK_HEADER } from "../src/store/event-mark.ts";
import { EventStore } from "../src/store/event-store.ts";
import { KEY_FILE_ENV, loadOrCreateEventKey } from "../src/store/key-file.ts";
import { bin, corral, type Run, root } from "./helpers/cli.ts";
import { makeEvent } from "./helpers/events.ts";
import { startTestNats, type TestNats } from "./helpers/nats.ts";
import { tempDir, trackProcess } from "./helpers/teardown.ts";

/** Start of an ANSI escape sequence (a string: Biome rejects control characters in regexes). */
const ESC = "\u001b[";

const jsonLines = (s: string) =>
  s
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

interface Seeded {
  seq: number;
  subject: string;
  event?: Envelope;
}

describe("corral CLI against a real nats-server", () => {
  let t: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let env: Record<string, string>;
  const seeded: Seeded[] = [];
  const alpha: AggregateRef = { kind: "command", id: "alpha" };
  const beta: AggregateRef = { kind: "command", id: "beta" };
  let poisonSeq = 0;

  async function append(ref: AggregateRef, event: Envelope): Promise<void> {
    const last = seeded.filter((s) => s.event?.aggregate.id === ref.id).at(-1)?.seq ?? 0;
    const { lastSeq } = await store.append(ref, [event], last);
    seeded.push({ seq: lastSeq, subject: `corral.evt.${ref.kind}.${ref.id}`, event });
  }

  before(async () => {
    t = await startTestNats();
    nc = await t.connect();
    // A writer's key, and the CLI told where it is: every seeded event is marked and verified.
    const { key, file } = loadOrCreateEventKey(tempDir("cli-key-"));
    store = await EventStore.open(nc, { integrity: { key } });
    env = { NATS_URL: t.url, [KEY_FILE_ENV]: file };
    const at = Date.UTC(2026, 10, 22, 7, 0, 0);
    await append(alpha, makeEvent(alpha, "CommandCreated", { agentId: "agent-1", action: "npm test" }, at));
    await append(beta, makeEvent(beta, "CommandCreated", { agentId: "agent-2", action: "lint it" }, at + 1));
    await append(alpha, makeEvent(alpha, "CommandSent", { attempt: 1 }, at + 2));
    // A message no corral reader can decode, yet marked by the writer (a newer writer's, or a bug):
    // undecodable, not forged. (Unmarked garbage is forged: test/forged-events.test.ts.)
    const poison = new Uint8Array([0xc1, 0xff]);
    const h = headers();
    h.set(MARK_HEADER, key.mark("corral.evt.command.x", poison, 0));
    nc.publish("corral.evt.command.x", poison, { headers: h });
    await nc.flush();
    poisonSeq = await store.lastSeq();
    assert.equal(poisonSeq, 4, "the poison message was stored");
    seeded.push({ seq: poisonSeq, subject: "corral.evt.command.x" });
    await append(beta, makeEvent(beta, "CommandSent", { attempt: 1 }, at + 3));
    await append(beta, makeEvent(beta, "CommandFailed", { error: "exit status 2" }, at + 4));
    await append(alpha, makeEvent(alpha, "CommandAcked", { attempt: 1 }, at + 5));
    await append(alpha, makeEvent(alpha, "CommandCompleted", { result: { output: "ok" } }, at + 6));
  });

  after(async () => {
    store.close();
    await t.cleanup();
  });

  /** What `--json` must print for a seeded record: the envelope exactly as appended. */
  function expectedJson(s: Seeded): Record<string, unknown> {
    if (!s.event) return { seq: s.seq, subject: s.subject, reason: "not-envelope" };
    return { seq: s.seq, subject: s.subject, event: JSON.parse(JSON.stringify(s.event)) };
  }
  function comparable(line: Record<string, unknown>): Record<string, unknown> {
    assert.match(String(line.time), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    if (line.error) {
      const e = line.error as { reason: string; message: string };
      assert.ok(e.message.length > 0);
      return { seq: line.seq, subject: line.subject, reason: e.reason };
    }
    return { seq: line.seq, subject: line.subject, event: line.event };
  }

  it("tail --json prints exactly the seeded records, the poison one as an error", async () => {
    const r = await corral(["events", "tail", "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(jsonLines(r.stdout).map(comparable), seeded.map(expectedJson));
  });

  it("tail -n keeps the newest N, --since <seq> starts at that sequence", async () => {
    const [last3, since, none, hour] = await Promise.all([
      corral(["events", "tail", "-n", "3", "--json"], env),
      corral(["events", "tail", "--since", "5", "--json"], env),
      corral(["events", "tail", "--since", "2999-01-01T00:00:00Z", "--json"], env),
      corral(["events", "tail", "--since", "1h", "--json"], env),
    ]);
    assert.equal(jsonLines(hour.stdout).length, seeded.length, "all were stored within the hour");
    assert.deepEqual(
      jsonLines(last3.stdout).map((l) => l.seq),
      seeded.slice(-3).map((s) => s.seq),
    );
    assert.deepEqual(
      jsonLines(since.stdout).map((l) => l.seq),
      seeded.filter((s) => s.seq >= 5).map((s) => s.seq),
    );
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, "");
  });

  it("--aggregate filters by subject, --type by event type, and they combine", async () => {
    const [one, kind, types, both, capped, earlier] = await Promise.all([
      corral(["events", "tail", "--aggregate", "command/beta", "--json"], env),
      corral(["events", "tail", "--aggregate", "command", "--json"], env),
      corral(
        ["events", "tail", "--type", "CommandCreated", "--type", "CommandFailed,CommandAcked", "--json"],
        env,
      ),
      corral(["events", "tail", "-a", "command/alpha", "-t", "CommandSent", "--json"], env),
      corral(["events", "tail", "-a", "command/alpha", "-n", "2", "--json"], env),
      // The newest matches lie before the first backward window (the last N of the stream).
      corral(
        ["events", "tail", "-a", "command/beta", "-t", "CommandCreated,CommandSent", "-n", "2", "--json"],
        env,
      ),
    ]);
    const seqs = (r: Run) => jsonLines(r.stdout).map((l) => l.seq);
    const where = (f: (s: Seeded) => boolean) => seeded.filter(f).map((s) => s.seq);
    assert.deepEqual(
      seqs(one),
      where((s) => s.event?.aggregate.id === "beta"),
    );
    assert.deepEqual(
      seqs(kind),
      where(() => true),
    ); // the poison message is on corral.evt.command.x
    assert.deepEqual(
      seqs(types),
      where((s) => ["CommandCreated", "CommandFailed", "CommandAcked"].includes(s.event?.type ?? "")),
    );
    assert.deepEqual(
      seqs(both),
      where((s) => s.event?.aggregate.id === "alpha" && s.event.type === "CommandSent"),
    );
    assert.deepEqual(seqs(capped), where((s) => s.event?.aggregate.id === "alpha").slice(-2));
    assert.deepEqual(seqs(earlier), [2, 5]);
  });

  it("human output: one line per record, the poison one UNDECODABLE, the rest still printed", async () => {
    const r = await corral(["events", "tail"], env);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines.length, seeded.length);
    const poison = lines.findIndex((l) => l.includes("UNDECODABLE"));
    assert.equal(
      poison,
      seeded.findIndex((s) => !s.event),
    );
    assert.match(
      lines[poison] as string,
      /^\s*4 \S+ corral\.evt\.command\.x\s+UNDECODABLE \(not-envelope\): /,
    );
    assert.match(
      lines.at(-1) as string,
      /^\s*8 \d\d:\d\d:\d\d\.\d{3} command\/alpha\s+CommandCompleted\s+result=/,
    );
    assert.match(lines[poison + 2] as string, /command\/beta\s+CommandFailed\s+error="exit status 2"/);
    for (const l of lines) assert.ok(l.length <= 120, `line longer than 120 columns: ${l}`);
    assert.ok(!r.stdout.includes(ESC), "no colour when stdout is not a terminal");
  });

  it("colour only when forced, and NO_COLOR wins over FORCE_COLOR", async () => {
    const [forced, both] = await Promise.all([
      corral(["events", "tail", "-n", "2"], { ...env, FORCE_COLOR: "1" }),
      corral(["events", "tail", "-n", "2"], { ...env, FORCE_COLOR: "1", NO_COLOR: "1" }),
    ]);
    assert.ok(forced.stdout.includes(ESC), "FORCE_COLOR turns colour on");
    assert.equal(both.code, 0, both.stderr);
    assert.ok(!both.stdout.includes(ESC), "NO_COLOR wins");
    assert.ok(both.stdout.includes("CommandCompleted"));
  });

  it("events show prints one record in full, or says it is not there", async () => {
    const s = seeded[2] as Seeded;
    const [json, human, poison, missing, bad] = await Promise.all([
      corral(["events", "show", String(s.seq), "--json"], env),
      corral(["events", "show", String(s.seq)], env),
      corral(["events", "show", String(poisonSeq), "--json"], env),
      corral(["events", "show", "999"], env),
      corral(["events", "show", "abc"], env),
    ]);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(json.stdout.trimEnd().split("\n").length, 1);
    assert.deepEqual(comparable(JSON.parse(json.stdout)), expectedJson(s));
    assert.deepEqual(JSON.parse(human.stdout), JSON.parse(json.stdout));
    assert.ok(human.stdout.split("\n").length > 5, "pretty-printed for humans");
    assert.deepEqual(JSON.parse(poison.stdout).error.reason, "not-envelope");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no event at stream sequence 999/);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /'abc'.*seq/);
  });

  it("usage errors exit 2 and name what was wrong", async () => {
    // Each parser's messages are checked in-process below; these prove the exit-code wiring.
    const cases: [string[], RegExp][] = [
      [["events", "tail", "--bogus"], /unknown option '--bogus'/],
      [["events", "tail", "--type", "Nope"], /--type.*"Nope".*known types: .*CommandCreated/],
      [["evnts"], /unknown command 'evnts'/],
    ];
    const runs = await Promise.all(cases.map(([args]) => corral(args, env)));
    runs.forEach((r, i) => {
      const [args, message] = cases[i] as [string[], RegExp];
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(" "));
      assert.equal(r.stdout, "");
    });
  });

  it("exits 3, naming the URL, when NATS is not there (refused: no retrying)", async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const r = await corral(["events", "tail"], { NATS_URL: url });
    assert.equal(r.code, 3, r.stderr);
    // A refused connection ends at once; the bound only catches retrying past the 3 s connect
    // timeout, with room for a slow start on a loaded machine.
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
    assert.ok(r.stderr.includes(url), r.stderr);
    const viaFlag = await corral(["--nats", url, "events", "show", "1"], {});
    assert.equal(viaFlag.code, 3);
    assert.ok(viaFlag.stderr.includes(url), viaFlag.stderr);
  });

  it("worldview folds the stream, now and as of an earlier sequence", async () => {
    const [now, then, human] = await Promise.all([
      corral(["worldview", "--json"], env),
      corral(["worldview", "--at", "3", "--json"], env),
      corral(["worldview"], env),
    ]);
    assert.equal(now.code, 0, now.stderr);
    const w = JSON.parse(now.stdout);
    assert.equal(w.seq, seeded.at(-1)?.seq);
    assert.equal(w.state.totals.events, seeded.filter((s) => s.event).length);
    assert.deepEqual(w.skipped, { "not-envelope": 1 });
    const t0 = JSON.parse(then.stdout);
    assert.equal(t0.seq, 3);
    assert.equal(t0.state.totals.events, 3);
    assert.deepEqual(t0.skipped, {});
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /not-envelope/);
    const bad = await corral(["worldview", "--at", "zero"], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--at.*'zero'/);
  });

  it("README documents every event type of the catalogue", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const missing = catalogue
      .filter((d) => !new RegExp(`^\\| \`${d.type}\` +\\| ${d.kind} +\\| ${d.v} +\\|`, "m").test(readme))
      .map((d) => d.type);
    assert.deepEqual(missing, [], "regenerate with: node --import tsx scripts/gen-event-table.ts --write");
  });

  // The tests below append to the stream, so they run after the exact-output ones above.

  it("--follow prints new events as they are appended and exits 0 on Ctrl-C", async () => {
    const gamma: AggregateRef = { kind: "command", id: "gamma" };
    const p = spawn(
      process.execPath,
      [bin, "events", "tail", "-f", "-n", "1", "-a", "command/gamma", "--json"],
      {
        cwd: root,
        env: { ...process.env, ...env },
      },
    );
    trackProcess(p, "corral events tail -f");
    let out = "";
    let err = "";
    p.stderr.on("data", (d) => {
      err += d;
    });
    const exited = new Promise<number | null>((r) => p.on("close", r));
    const lineCount = () => out.split("\n").filter(Boolean).length;
    const waitFor = async (n: number) => {
      const deadline = Date.now() + 20_000; // a bound for a loaded machine, not a speed claim
      while (lineCount() < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(lineCount(), n, `${out}\n${err}`);
    };
    p.stdout.on("data", (d) => {
      out += d;
    });
    // -n 1: printed exactly once whether it lands before the CLI looks (tail) or after (follow).
    const first = await store.append(
      gamma,
      [makeEvent(gamma, "CommandCreated", { agentId: "a", action: "x" })],
      0,
    );
    await waitFor(1);
    await store.append(gamma, [makeEvent(gamma, "CommandSent", { attempt: 1 })], first.lastSeq);
    await waitFor(2);
    p.kill("SIGINT");
    assert.equal(await exited, 0, err);
    assert.deepEqual(
      jsonLines(out).map((l) => (l.event as Envelope).type),
      ["CommandCreated", "CommandSent"],
    );
  });

  it("demo uses the NATS that answers, drives commands and shows their events", async () => {
    const before = await store.lastSeq();
    const r = await corral(["demo"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await store.lastSeq()) > before, "the demo appended events");
    assert.match(r.stdout, /command\/demo-\S+\s+CommandCompleted/);
    assert.match(r.stdout, /corral events tail --follow/);
  });
});

describe("option parsers", () => {
  const rejects = (f: () => unknown, message: RegExp) =>
    assert.throws(f, (err: Error) => err instanceof InvalidArgumentError && message.test(err.message));

  it("--since: a sequence, a duration ago or an ISO time", () => {
    const now = () => Date.UTC(2026, 10, 22, 12, 0, 0);
    assert.deepEqual(parseSince("120", now), { fromSeq: 120 });
    assert.deepEqual(parseSince("5m", now), { fromTime: new Date(now() - 300_000) });
    assert.deepEqual(parseSince("90s", now), { fromTime: new Date(now() - 90_000) });
    assert.deepEqual(parseSince("2h", now), { fromTime: new Date(now() - 7_200_000) });
    assert.deepEqual(parseSince("1d", now), { fromTime: new Date(now() - 86_400_000) });
    assert.deepEqual(parseSince("2026-11-22T07:00:00Z", now), { fromTime: new Date("2026-11-22T07:00:00Z") });
    for (const bad of ["yesterday", "5 minutes", "-3", "May 5", "2026-13-45T99:00:00Z"]) {
      rejects(() => parseSince(bad, now), /sequence.*duration.*ISO/);
    }
  });

  it("--aggregate: kind/id or a kind, checked against the contract", () => {
    assert.deepEqual(parseAggregate("command/abc"), {
      subject: "corral.evt.command.abc",
      label: "command/abc",
    });
    assert.deepEqual(parseAggregate("agent"), { subject: "corral.evt.agent.*", label: "agent" });
    rejects(() => parseAggregate("ship"), /kinds are pool, agent/);
    rejects(() => parseAggregate("ship/1"), /kind "ship"/);
    rejects(() => parseAggregate("command/a.b"), /id "a\.b" is invalid/);
    rejects(() => parseAggregate("command/"), /id "" is invalid/);
  });

  it("--type: repeatable, comma lists, unknown names listed with the known ones", () => {
    assert.deepEqual(parseTypes("CommandSent, CommandAcked", ["CommandCreated"]), [
      "CommandCreated",
      "CommandSent",
      "CommandAcked",
    ]);
    rejects(() => parseTypes("CommandSent,Nope"), /unknown event type "Nope"; known types: CommandCreated, /);
    rejects(() => parseTypes(","), /expected an event type/);
  });

  it("counts and sequences", () => {
    assert.equal(parseCount("0"), 0);
    assert.equal(parseSeq("42"), 42);
    rejects(() => parseCount("-3"), /non-negative integer/);
    rejects(() => parseCount("2.5"), /non-negative integer/);
    rejects(() => parseSeq("0"), /positive integer/);
  });
});

describe("corral demo / start without a running NATS", () => {
  it("starts a nats-server of its own under the data dir and stops it afterwards", async () => {
    const dir = tempDir("cli-start-");
    const url = `nats://127.0.0.1:${await freePort()}`;
    const r = await corral(["demo", "--data-dir", dir], { NATS_URL: url });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /CommandCompleted/);
    assert.ok(existsSync(join(dir, "nats", "jetstream")), "JetStream store kept");
    assert.ok(existsSync(join(dir, "nats.log")));
    assert.equal(await natsAnswers(url, 300), false, "the server it started is stopped again");
  });

  it("exits 3 with install instructions when nats-server is not on PATH", async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const dir = tempDir("cli-nopath-");
    const r = await corral(["start", "--data-dir", dir], { NATS_URL: url, PATH: "/nonexistent" });
    assert.equal(r.code, 3, r.stderr);
    assert.ok(r.stderr.includes(url));
    assert.match(r.stderr, /apt-get install nats-server/);
    assert.match(r.stderr, /brew install nats-server/);
    assert.match(r.stderr, /docker run -p 4222:4222 nats:2\.9 -js/);
  });
});
