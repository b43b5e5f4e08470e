import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Agentd, type AgentdOptions } from "../src/agentd/agentd.ts";
import { encodeFrame } from "../src/agentd/frames.ts";
import type { FromAgent, ResultMsg, ToAgent } from "../src/agentd/protocol.ts";
import { ResultCache } from "../src/agentd/results.ts";
import { AgentdChannel } from "./helpers/agentd-channel.ts";
import { onTeardown, tempDir } from "./helpers/teardown.ts";

/** The control plane's side in these tests: what agentd sent so far, and a wait for what comes. */
class Peer {
  readonly got: FromAgent[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(readonly channel: AgentdChannel) {
    channel.onMessage((m) => {
      this.got.push(m);
      for (const w of this.waiters) w();
    });
  }

  send(msg: ToAgent): void {
    this.channel.send(msg);
  }

  /** The first message (already received or still to come) that `pred` accepts. */
  waitFor<M extends FromAgent>(pred: (m: FromAgent) => m is M, what: string, ms = 15_000): Promise<M> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.got.find(pred);
        if (!m) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(m);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        const last = this.got.slice(-20).map((g) => g.t);
        reject(new Error(`no ${what} within ${ms} ms; got ${this.got.length}, the last: ${last.join(",")}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  /** The final answer (done or error) for command `id`. */
  result(id: string, ms?: number) {
    return this.waitFor(
      (m): m is Extract<FromAgent, { t: "done" | "error" }> =>
        (m.t === "done" || m.t === "error") && m.id === id,
      `result of ${id}`,
      ms,
    );
  }

  stdout(id: string): string {
    const outs = this.got.filter((m) => m.t === "out" && m.id === id && m.stream === "stdout");
    return outs.map((m) => (m.t === "out" ? Buffer.from(m.data).toString() : "")).join("");
  }
}

const is =
  <T extends FromAgent["t"]>(t: T) =>
  (m: FromAgent): m is Extract<FromAgent, { t: T }> =>
    m.t === t;

const text = (b: Uint8Array) => Buffer.from(b).toString();

async function startAgentd(opts: Partial<AgentdOptions> = {}) {
  const home = tempDir("home-");
  const stateDir = tempDir("state-");
  const agentd = new Agentd({
    agentId: "agent-1",
    poolId: "pool-1",
    home,
    stateDir,
    killGraceMs: 300,
    heartbeatMs: 100,
    commandOutput: "ignore",
    ...opts,
  });
  const server = createServer((s) => agentd.handle(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  assert.ok(address && typeof address === "object");
  const sockets: Socket[] = [];
  onTeardown("agentd", async () => {
    await agentd.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  /** A new connection, optionally past hello. */
  const dial = async (hello = true) => {
    const socket = connect(address.port, "127.0.0.1");
    sockets.push(socket);
    await new Promise<void>((r, j) => socket.once("connect", r).once("error", j));
    const peer = new Peer(new AgentdChannel(socket));
    if (hello) {
      peer.send({ t: "hello", v: 1, agentId: "agent-1" });
      await peer.waitFor(is("hello-ack"), "hello-ack");
    }
    return peer;
  };
  return { agentd, home, stateDir, dial, socketsOf: () => sockets };
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

describe("agentd engine over a plain socket (src/agentd/agentd.ts)", () => {
  it("answers hello with what it knows, ping with pong, and asks for hello before anything else", async () => {
    const { dial } = await startAgentd();
    const peer = await dial(false);
    peer.send({ t: "exec", id: "early", argv: ["true"] });
    const refused = await peer.waitFor(is("error"), "error");
    assert.deepEqual(refused, { t: "error", id: "early", code: "hello_first", message: "send hello first" });
    peer.send({ t: "ping" });
    await peer.waitFor(is("pong"), "pong");
    peer.send({ t: "hello", v: 1, agentId: "agent-1" });
    const ack = await peer.waitFor(is("hello-ack"), "hello-ack");
    assert.deepEqual(ack, {
      t: "hello-ack",
      agentId: "agent-1",
      poolId: "pool-1",
      initDone: [],
      commandRunning: false,
      commandStarts: 0,
    });
    peer.send({ t: "register-required" });
    assert.deepEqual(await peer.waitFor(is("register"), "register"), {
      t: "register",
      poolId: "pool-1",
      agentId: "agent-1",
    });
    const beat = await peer.waitFor(is("heartbeat"), "heartbeat");
    assert.ok(beat.rssBytes > 0 && beat.uptimeMs >= 0 && beat.cpuUserMs >= 0, JSON.stringify(beat));
  });

  it("a hello of another protocol version is refused and the connection ends", async () => {
    const { dial } = await startAgentd();
    const peer = await dial(false);
    peer.send({ t: "hello", v: 2, agentId: "agent-1" });
    const err = await peer.waitFor(is("error"), "error");
    assert.equal(err.code, "unsupported_version");
    assert.deepEqual(await peer.channel.closed, { reason: undefined });
  });

  it("a bad message is answered and the connection goes on; a bad frame ends it", async () => {
    const { dial, socketsOf } = await startAgentd();
    const peer = await dial();
    const socket = socketsOf()[0]!;
    socket.write(encodeFrame({ t: "exec", id: "x1", argv: [] }));
    const bad = await peer.waitFor(is("error"), "error");
    assert.deepEqual(bad, {
      t: "error",
      id: "x1",
      code: "bad_message",
      message: "exec.argv: Too small: expected array to have >=1 items",
    });
    peer.send({ t: "ping" });
    await peer.waitFor(is("pong"), "pong");
    socket.write(Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    const broken = await peer.waitFor(
      (m): m is FromAgent => m.t === "error" && m.code === "bad_frame",
      "bad_frame",
    );
    assert.equal(
      broken.t === "error" && broken.message,
      "frame of 4294967295 bytes exceeds the limit of 1048576",
    );
    await peer.channel.closed;
  });

  it("exec: exit code, stdout and stderr as they come, stdin, cwd and env", async () => {
    const { dial, home } = await startAgentd();
    const peer = await dial();
    const script = 'cat; echo "$GREETING from $(pwd)" >&2; exit 3';
    peer.send({
      t: "exec",
      id: "e1",
      argv: ["sh", "-c", script],
      stdin: Buffer.from("piped in\n"),
      env: { GREETING: "hi" },
    });
    await peer.waitFor(is("ack"), "ack");
    const done = await peer.result("e1");
    assert.equal(done.t, "done");
    if (done.t !== "done") return;
    assert.equal(done.exitCode, 3);
    assert.equal(text(done.stdoutTail), "piped in\n");
    assert.equal(text(done.stderrTail), `hi from ${home}\n`);
    assert.equal(done.truncated, false);
    assert.equal(done.replayed, undefined);
    assert.equal(peer.stdout("e1"), "piped in\n");
  });

  it("exec that cannot start is spawn_failed, naming why", async () => {
    const { dial } = await startAgentd();
    const peer = await dial();
    peer.send({ t: "exec", id: "nope", argv: ["/no/such/program"] });
    const r = await peer.result("nope");
    assert.equal(r.t === "error" && r.code, "spawn_failed");
    assert.equal(r.t === "error" && r.message, "/no/such/program: no such file in the agent");
    peer.send({ t: "exec", id: "noprog", argv: ["no-such-program-here"] });
    const r1 = await peer.result("noprog");
    assert.equal(r1.t === "error" && r1.code, "spawn_failed");
    assert.match(
      r1.t === "error" ? r1.message : "",
      /^no-such-program-here: no such program on the agent's PATH \(.*\/bin.*\); its image may not have it$/,
    );
    peer.send({ t: "exec", id: "nowhere", argv: ["true"], cwd: "no/such/dir" });
    const r2 = await peer.result("nowhere");
    assert.equal(r2.t === "error" && r2.code, "spawn_failed");
    assert.match(r2.t === "error" ? r2.message : "", /^cwd .*no\/such\/dir does not exist$/);
  });

  it("exec over its timeout: SIGTERM, then SIGKILL after the grace; timeout error with the tails", async () => {
    const { dial, home } = await startAgentd({ killGraceMs: 300 });
    const peer = await dial();
    // Ignores SIGTERM (so does the sleep it runs: an ignored signal stays ignored across exec).
    const script = `trap "" TERM; echo $$ > pid; echo started; while :; do sleep 0.05; done`;
    peer.send({ t: "exec", id: "slow", argv: ["sh", "-c", script], timeoutMs: 300 });
    const r = await peer.result("slow");
    assert.equal(r.t, "error");
    if (r.t !== "error") return;
    assert.equal(r.code, "timeout");
    assert.equal(text(r.stdoutTail ?? new Uint8Array()), "started\n");
    assert.ok((r.durationMs ?? 0) >= 550, `ended after ${r.durationMs} ms: before the grace`);
    assert.ok(isGone(Number(readFileSync(join(home, "pid"), "utf8"))), "the timed-out shell still runs");
  });

  it("tails keep the last 64 KiB of each stream and say they were truncated; out frames carry all", async () => {
    const { dial } = await startAgentd();
    const peer = await dial();
    const script = "head -c 200000 /dev/zero | tr '\\0' a; printf END; echo short >&2";
    peer.send({ t: "exec", id: "big", argv: ["sh", "-c", script] });
    const r = await peer.result("big");
    assert.equal(r.t, "done");
    if (r.t !== "done") return;
    assert.equal(r.stdoutTail.length, 64 * 1024);
    assert.ok(text(r.stdoutTail).endsWith("aaaEND"));
    assert.equal(text(r.stderrTail), "short\n");
    assert.equal(r.truncated, true);
    assert.equal(peer.stdout("big").length, 200_003);
  });

  it("the same exec id sent again while it runs attaches the newest connection; after, the result is replayed", async () => {
    const { dial, home } = await startAgentd();
    const first = await dial();
    const go = join(home, "go");
    const script = `echo ran >> count; echo one; while [ ! -e "${go}" ]; do sleep 0.02; done; echo two`;
    const exec: ToAgent = { t: "exec", id: "once", argv: ["sh", "-c", script] };
    first.send(exec);
    await first.waitFor((m): m is FromAgent => m.t === "out" && m.id === "once", "first output");
    first.channel.close(); // a control plane that went away mid-command
    const second = await dial();
    second.send(exec);
    await second.waitFor(is("ack"), "ack on the second connection");
    writeFileSync(go, "");
    const r = await second.result("once");
    assert.equal(r.t === "done" && text(r.stdoutTail), "one\ntwo\n");
    assert.equal(second.stdout("once"), "two\n", "the rest of the output streams to the newest connection");
    const third = await dial();
    third.send(exec);
    const replay = await third.result("once");
    assert.deepEqual(replay, { ...r, replayed: true });
    assert.equal(readFileSync(join(home, "count"), "utf8"), "ran\n", "the command ran once");
  });

  it("a command whose connection is gone streams on to the next connection that says hello", async () => {
    const { dial, home } = await startAgentd();
    const first = await dial();
    const go = join(home, "go");
    first.send({
      t: "exec",
      id: "orphan",
      argv: ["sh", "-c", `echo one; while [ ! -e "${go}" ]; do sleep 0.02; done; echo two`],
    });
    await first.waitFor((m): m is FromAgent => m.t === "out" && m.id === "orphan", "first output");
    first.channel.close();
    await first.channel.closed;
    const second = await dial(); // says hello, never names the command
    writeFileSync(go, "");
    const r = await second.result("orphan");
    assert.equal(r.t === "done" && text(r.stdoutTail), "one\ntwo\n");
    assert.equal(second.stdout("orphan"), "two\n");
  });

  it("a peer that does not read gets no more output than agentd will queue, and still its result", async () => {
    const { dial, socketsOf, home } = await startAgentd();
    const slow = await dial();
    const socket = socketsOf()[0]!;
    socket.pause(); // reads nothing until the command is over
    const total = 40 * 1024 * 1024;
    const script = `head -c ${total} /dev/zero; touch "${home}/over"`;
    slow.send({ t: "exec", id: "flood", argv: ["sh", "-c", script] });
    for (let i = 0; i < 600 && !existsSync(join(home, "over")); i++) await sleep(100);
    assert.ok(existsSync(join(home, "over")), "the flood did not finish while its peer was not reading");
    socket.resume();
    const r = await slow.result("flood", 60_000);
    assert.equal(r.t === "done" && r.stdoutTail.length, 64 * 1024);
    const streamed = slow.got.reduce(
      (n, m) => n + (m.t === "out" && m.id === "flood" ? m.data.length : 0),
      0,
    );
    assert.ok(streamed < total / 2, `streamed ${streamed} of ${total} bytes to a peer that did not read`);
  });

  it("cancel stops a running command (cancelled, with its tails); cancel of nothing says not_running", async () => {
    const { dial } = await startAgentd();
    const peer = await dial();
    peer.send({ t: "exec", id: "long", argv: ["sh", "-c", "echo up; exec sleep 30"] });
    await peer.waitFor((m): m is FromAgent => m.t === "out" && m.id === "long", "output");
    peer.send({ t: "cancel", id: "long" });
    const r = await peer.result("long");
    assert.equal(r.t === "error" && r.code, "cancelled");
    assert.equal(r.t === "error" && text(r.stdoutTail ?? new Uint8Array()), "up\n");
    peer.send({ t: "cancel", id: "ghost" });
    const none = await peer.result("ghost");
    assert.deepEqual(none, { t: "error", id: "ghost", code: "not_running", message: "ghost is not running" });
  });
});

describe("agentd result cache (src/agentd/results.ts)", () => {
  it("keeps the last results by id and forgets the oldest first", () => {
    const cache = new ResultCache(3);
    const result = (id: string): ResultMsg => ({ t: "error", id, code: "cancelled", message: id });
    for (const id of ["a", "b", "c", "d"]) cache.set(result(id));
    assert.equal(cache.get("a"), undefined);
    assert.deepEqual(
      ["b", "c", "d"].map((id) => cache.get(id)?.id),
      ["b", "c", "d"],
    );
    assert.equal(new ResultCache().get("x"), undefined);
  });
});

describe("agentd init ops", () => {
  it("agent-ready twice starts the agent's command once; hello-ack says it runs; close stops it", async () => {
    const home = tempDir("cmd-");
    const pidFile = join(home, "agent.pid");
    const agentCommand = [
      "sh",
      "-c",
      `echo start >> "${home}/starts"; echo $$ > "${pidFile}"; exec sleep 60`,
    ];
    const { agentd, dial, stateDir } = await startAgentd({ agentCommand });
    const peer = await dial();
    peer.send({ t: "op", id: "r1", op: "agent-ready", args: {} });
    peer.send({ t: "op", id: "r2", op: "agent-ready", args: {} });
    for (const id of ["r1", "r2"]) assert.equal((await peer.result(id)).t, "done");
    const again = await dial();
    again.send({ t: "op", id: "r3", op: "agent-ready", args: {} });
    assert.equal((await again.result("r3")).t, "done");
    const ack = again.got.find(is("hello-ack"));
    assert.deepEqual(ack && [ack.commandRunning, ack.commandStarts, ack.initDone], [
      true,
      1,
      ["agent-ready"],
    ]);
    assert.ok(existsSync(join(stateDir, "init", "agent-ready")));
    for (let i = 0; i < 500 && !hasLine(pidFile); i++) await sleep(20);
    assert.equal(readFileSync(join(home, "starts"), "utf8"), "start\n");
    const pid = Number(readFileSync(pidFile, "utf8"));
    await agentd.close();
    assert.ok(isGone(pid), "the agent's command outlived agentd.close()");
  });

  it("the agent command's exit is reported on the next heartbeat; agent-ready then says it exited", async () => {
    const { dial } = await startAgentd({ agentCommand: ["sh", "-c", "exit 7"] });
    const peer = await dial();
    peer.send({ t: "op", id: "r1", op: "agent-ready", args: {} });
    assert.equal((await peer.result("r1")).t, "done");
    const beat = await peer.waitFor(
      (m): m is Extract<FromAgent, { t: "heartbeat" }> => m.t === "heartbeat" && m.commandExit !== undefined,
      "heartbeat with the exit",
    );
    assert.deepEqual(
      [beat.commandRunning, beat.commandStarts, beat.commandExit],
      [false, 1, { exitCode: 7, signal: null }],
    );
    peer.send({ t: "op", id: "r2", op: "agent-ready", args: {} });
    const r = await peer.result("r2");
    assert.deepEqual(r, {
      t: "error",
      id: "r2",
      code: "command_exited",
      message: "the agent's command exited with code 7",
    });
  });

  it("post-init runs until it succeeds once; its marker answers every later one", async () => {
    const { dial, home, stateDir } = await startAgentd();
    const peer = await dial();
    const failing = { argv: ["sh", "-c", "echo try >> tries; exit 1"] };
    peer.send({ t: "op", id: "p1", op: "post-init", args: failing });
    const failed = await peer.result("p1");
    assert.equal(failed.t === "done" && failed.exitCode, 1);
    assert.equal(existsSync(join(stateDir, "init", "post-init")), false, "a failure left a marker");
    const ok = { argv: ["sh", "-c", "echo try >> tries"] };
    for (const id of ["p2", "p3"]) {
      peer.send({ t: "op", id, op: "post-init", args: ok });
      const r = await peer.result(id);
      assert.equal(r.t === "done" && r.exitCode, 0);
    }
    assert.equal(readFileSync(join(home, "tries"), "utf8"), "try\ntry\n", "ran once after its failure");
    const again = await dial();
    assert.deepEqual(again.got.find(is("hello-ack"))?.initDone, ["post-init"]);
  });

  it("git clones a local bare repo at a ref once; sent again it finds its clone and does nothing", async () => {
    const { dial, home } = await startAgentd();
    const repo = makeBareRepo();
    const peer = await dial();
    const args = { repo, dir: "work/project", ref: "v1" };
    peer.send({ t: "op", id: "g1", op: "git", args });
    const r = await peer.result("g1");
    assert.equal(r.t === "done" && r.exitCode, 0, JSON.stringify(r.t === "error" ? r.message : ""));
    const clone = join(home, "work/project");
    assert.equal(
      readFileSync(join(clone, "README"), "utf8"),
      "v1\n",
      "checked out the ref, not the branch tip",
    );
    writeFileSync(join(clone, "untracked"), "kept"); // gone if it cloned again
    const gitDir = statSync(join(clone, ".git")).ino;
    peer.send({ t: "op", id: "g2", op: "git", args });
    assert.equal((await peer.result("g2")).t, "done");
    assert.equal(readFileSync(join(clone, "untracked"), "utf8"), "kept");
    assert.equal(statSync(join(clone, ".git")).ino, gitDir);
    // A directory inside the clone is not a clone, though git run there reads the clone's origin.
    mkdirSync(join(clone, "sub"));
    writeFileSync(join(clone, "sub/notes"), "not a repo");
    peer.send({ t: "op", id: "g4", op: "git", args: { repo, dir: "work/project/sub" } });
    assert.deepEqual(await peer.result("g4"), {
      t: "error",
      id: "g4",
      code: "op_failed",
      message: "git: work/project/sub exists and is not a clone",
    });
    peer.send({ t: "op", id: "g3", op: "git", args: { repo: `${repo}-other`, dir: "work/project" } });
    const other = await peer.result("g3");
    assert.deepEqual(other, {
      t: "error",
      id: "g3",
      code: "op_failed",
      message: "git: work/project is a clone of another repository",
    });
  });

  it("git worktree adds a worktree of a local repo at a ref once; another repo's is refused", async () => {
    const { dial, home } = await startAgentd();
    const repo = makeBareRepo();
    const peer = await dial();
    const args = { repo, dir: "wt/project", ref: "v1", mode: "worktree" as const };
    peer.send({ t: "op", id: "w1", op: "git", args });
    const r = await peer.result("w1");
    assert.equal(r.t === "done" && r.exitCode, 0, JSON.stringify(r.t === "error" ? r.message : ""));
    const tree = join(home, "wt/project");
    assert.equal(readFileSync(join(tree, "README"), "utf8"), "v1\n", "checked out the ref");
    // A worktree's .git is a file naming the repository's worktrees entry, not a clone's directory.
    assert.ok(statSync(join(tree, ".git")).isFile());
    writeFileSync(join(tree, "untracked"), "kept"); // gone if it were added again
    peer.send({ t: "op", id: "w2", op: "git", args });
    assert.equal((await peer.result("w2")).t, "done");
    assert.equal(readFileSync(join(tree, "untracked"), "utf8"), "kept");
    const other = makeBareRepo();
    peer.send({ t: "op", id: "w3", op: "git", args: { ...args, repo: other } });
    assert.deepEqual(await peer.result("w3"), {
      t: "error",
      id: "w3",
      code: "op_failed",
      message: `git: wt/project is not a worktree of ${other}`,
    });
  });

  it("config writes files under the home with their mode and refuses a path out of it", async () => {
    const { dial, home } = await startAgentd();
    const outside = tempDir("outside-");
    symlinkSync(outside, join(home, "link"));
    const peer = await dial();
    const files = [
      { path: ".config/agent/settings.json", content: '{"a":1}', mode: 0o600 },
      { path: "bin/tool", content: Buffer.from("#!/bin/sh\n"), mode: 0o755 },
    ];
    peer.send({ t: "op", id: "c1", op: "config", args: { files } });
    assert.equal((await peer.result("c1")).t, "done");
    assert.equal(readFileSync(join(home, ".config/agent/settings.json"), "utf8"), '{"a":1}');
    assert.equal(statSync(join(home, ".config/agent/settings.json")).mode & 0o777, 0o600);
    assert.equal(statSync(join(home, "bin/tool")).mode & 0o777, 0o755);
    peer.send({ t: "op", id: "c2", op: "config", args: { files: [{ path: "link/x", content: "no" }] } });
    const refused = await peer.result("c2");
    assert.deepEqual(refused, {
      t: "error",
      id: "c2",
      code: "op_failed",
      message: "link/x: outside the agent's home",
    });
    assert.equal(existsSync(join(outside, "x")), false);
  });

  it("ssh appends known_hosts and authorized_keys lines once and writes keys 0600", async () => {
    const { dial, home } = await startAgentd();
    const peer = await dial();
    const args = {
      knownHosts: ["git.example ssh-ed25519 AAAAC3Nza1"],
      authorizedKeys: ["ssh-ed25519 AAAAC3Nza2 cp"],
      keys: [{ name: "id_ed25519", content: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n" }],
    };
    for (const id of ["s1", "s2"]) {
      peer.send({ t: "op", id, op: "ssh", args });
      assert.equal((await peer.result(id)).t, "done");
    }
    const ssh = join(home, ".ssh");
    assert.equal(statSync(ssh).mode & 0o777, 0o700);
    assert.equal(readFileSync(join(ssh, "known_hosts"), "utf8"), "git.example ssh-ed25519 AAAAC3Nza1\n");
    assert.equal(readFileSync(join(ssh, "authorized_keys"), "utf8"), "ssh-ed25519 AAAAC3Nza2 cp\n");
    for (const f of ["known_hosts", "authorized_keys", "id_ed25519"]) {
      assert.equal(statSync(join(ssh, f)).mode & 0o777, 0o600, f);
    }
  });
});

/** A bare repo with tag v1 (README "v1") and a later commit on its branch (README "v2"). */
function makeBareRepo(): string {
  const root = tempDir("repo-");
  const work = join(root, "src");
  const bare = join(root, "project.git");
  const git = (...args: string[]) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.invalid", ...args], { cwd: root });
  git("init", "--quiet", work);
  writeFileSync(join(work, "README"), "v1\n");
  git("-C", work, "add", "README");
  git("-C", work, "commit", "--quiet", "-m", "v1");
  git("-C", work, "tag", "v1");
  writeFileSync(join(work, "README"), "v2\n");
  git("-C", work, "commit", "--quiet", "-am", "v2");
  git("clone", "--quiet", "--bare", work, bare);
  return bare;
}

/** Whether `file` holds a whole line yet (a shell writes it a moment after it starts). */
function hasLine(file: string): boolean {
  return existsSync(file) && readFileSync(file, "utf8").endsWith("\n");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
