import { formatIssues } from "../events/define.ts";
import { z } from "../vendor/zod.ts";

/**
 * The contract between the control plane (CP) and agentd, the daemon beside each agent. The CP
 * dials agentd over strict mTLS; both sides then speak length-prefixed MessagePack frames
 * (frames.ts), each one map `{ t: <type>, … }`. Everything a peer sends is checked here before
 * use: `parseToAgent` on agentd's side, `parseFromAgent` on the CP's.
 *
 * A command id names one exec or op for good: agentd runs it at most once. Sent again while it
 * runs, the output goes on to the newest connection; sent again after, the cached result comes
 * back with `replayed: true` (agentd keeps the last RESULT_CACHE_SIZE results, in memory: a
 * restarted agentd has none). A retry of a failed command is a new id.
 *
 * `out` frames stream output as it comes, best effort: to a peer more than a few MiB behind,
 * agentd stops sending output (never results) until it catches up. The result's tails are whole.
 */

export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts (bytes of msgpack after the 4-byte length). */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** How much of each stream a result keeps: the last TAIL_BYTES of stdout and of stderr. */
export const TAIL_BYTES = 64 * 1024;
export const RESULT_CACHE_SIZE = 1000;
export const DEFAULT_HEARTBEAT_MS = 5000;
/** The only answer a refused registration gets: the peer never learns which check failed. */
export const REFUSED_MESSAGE = "registration rejected";
/** Init steps agentd knows, in plan order; `hello-ack.initDone` names those whose marker exists. */
export const INIT_STEPS = ["config", "git", "ssh", "post-init", "agent-ready"] as const;
export type InitStep = (typeof INIT_STEPS)[number];

const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, {
  message: "expected bytes (msgpack bin)",
});
const id = z.string().min(1).max(200);
const text = z.string().max(64 * 1024);
const argv = z.array(text).min(1).max(4096);
const env = z.record(z.string().min(1).max(1024), text);
const timeoutMs = z.number().int().positive().max(86_400_000);
/** A path under the agent's home: relative, no `..` (agentd checks it again after resolving). */
const homePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), "must be relative to the home, no '..'");
/** One line of a file (known_hosts, authorized_keys): no line breaks. */
const line = z
  .string()
  .min(1)
  .max(16 * 1024)
  .refine((l) => !/[\r\n]/.test(l), "must be one line");
const fileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "must be a plain file name");

// ---- the init plan's built-in ops: each idempotent ----

export const opArgs = {
  /** Write files under the agent's home (each replaced atomically; mode default 0644). */
  config: z.strictObject({
    files: z
      .array(
        z.strictObject({
          path: homePath,
          content: z.union([z.string(), bytes]),
          mode: z.number().int().min(0).max(0o7777).optional(),
        }),
      )
      .max(1000),
  }),
  /**
   * Clone `repo` into `dir` (under the home) and check out `ref`, or (`worktree`) add `dir` as a
   * worktree of the local repository `repo`; nothing if `dir` already is that clone or worktree.
   */
  git: z.strictObject({
    mode: z.enum(["clone", "worktree"]).optional(),
    repo: z
      .string()
      .min(1)
      .max(4096)
      .refine((r) => !r.startsWith("-"), "must not start with '-'"),
    dir: homePath,
    ref: z
      .string()
      .min(1)
      .max(256)
      .refine((r) => !r.startsWith("-"), "must not start with '-'")
      .optional(),
  }),
  /** Lines into $HOME/.ssh/known_hosts and authorized_keys if missing; key files (0600). */
  ssh: z.strictObject({
    knownHosts: z.array(line).max(1000).optional(),
    authorizedKeys: z.array(line).max(1000).optional(),
    keys: z
      .array(z.strictObject({ name: fileName, content: z.string().max(64 * 1024) }))
      .max(100)
      .optional(),
  }),
  /** Runs `argv` once: a marker in agentd's state dir records its success (a failure runs again). */
  "post-init": z.strictObject({
    argv,
    cwd: z.string().min(1).max(4096).optional(),
    env: env.optional(),
    timeoutMs: timeoutMs.optional(),
  }),
  /** Starts the agent's own command (from agentd's environment, never from the peer) exactly once. */
  "agent-ready": z.strictObject({}),
} as const;

export type OpName = keyof typeof opArgs;
export type OpArgs<O extends OpName> = z.infer<(typeof opArgs)[O]>;
export type OpMsg = { [O in OpName]: { t: "op"; id: string; op: O; args: OpArgs<O> } }[OpName];

// ---- CP → agentd ----

const toAgent = {
  hello: z.strictObject({ t: z.literal("hello"), v: z.number().int(), agentId: id }),
  "register-required": z.strictObject({ t: z.literal("register-required") }),
  welcome: z.strictObject({ t: z.literal("welcome") }),
  refused: z.strictObject({ t: z.literal("refused"), message: text }),
  /**
   * Run `argv` (no shell). `cwd` relative to the agent's home (default: the home); `env` adds to
   * agentd's environment; `stdin` is written and closed (none: empty); no `timeoutMs`, no limit.
   * Answered by ack, out…, then done (or error: spawn_failed, timeout, cancelled).
   */
  exec: z.strictObject({
    t: z.literal("exec"),
    id,
    argv,
    cwd: z.string().min(1).max(4096).optional(),
    env: env.optional(),
    stdin: bytes.optional(),
    timeoutMs: timeoutMs.optional(),
  }),
  /** An init step (opArgs); answered like exec, and a success leaves the step's marker. */
  op: z.strictObject({ t: z.literal("op"), id, op: z.string(), args: z.unknown() }),
  /** Stop a running command as a timeout would: its result is error `cancelled`. */
  cancel: z.strictObject({ t: z.literal("cancel"), id }),
  ping: z.strictObject({ t: z.literal("ping") }),
} as const;

type ToAgentSchemas = typeof toAgent;
export type ToAgent =
  | { [T in Exclude<keyof ToAgentSchemas, "op">]: z.infer<ToAgentSchemas[T]> }[Exclude<
      keyof ToAgentSchemas,
      "op"
    >]
  | OpMsg;
export type ExecMsg = z.infer<ToAgentSchemas["exec"]>;

// ---- agentd → CP ----

/** What agentd knows of the agent's own command; on hello-ack and every heartbeat. */
const commandStatus = {
  commandRunning: z.boolean(),
  /** How often agentd started it in its lifetime: 0 or 1 (agent-ready starts it once). */
  commandStarts: z.number().int().min(0),
  /** How it ended, once it has: exit code, or the signal that killed it. */
  commandExit: z
    .strictObject({ exitCode: z.number().int().nullable(), signal: z.string().nullable() })
    .optional(),
};
/** The last TAIL_BYTES of each stream, and whether either had more. */
const tails = { stdoutTail: bytes, stderrTail: bytes, truncated: z.boolean() };

const fromAgent = {
  "hello-ack": z.strictObject({
    t: z.literal("hello-ack"),
    agentId: z.string(),
    poolId: z.string(),
    initDone: z.array(z.enum(INIT_STEPS)),
    ...commandStatus,
  }),
  register: z.strictObject({ t: z.literal("register"), poolId: z.string(), agentId: z.string() }),
  ack: z.strictObject({ t: z.literal("ack"), id }),
  out: z.strictObject({ t: z.literal("out"), id, stream: z.enum(["stdout", "stderr"]), data: bytes }),
  done: z.strictObject({
    t: z.literal("done"),
    id,
    exitCode: z.number().int(),
    durationMs: z.number().min(0),
    ...tails,
    replayed: z.boolean().optional(),
  }),
  error: z.strictObject({
    t: z.literal("error"),
    /** "" for an error about the connection rather than one command (bad frame, hello first). */
    id: z.string().max(200),
    code: z.string(),
    message: z.string(),
    durationMs: z.number().min(0).optional(),
    stdoutTail: bytes.optional(),
    stderrTail: bytes.optional(),
    truncated: z.boolean().optional(),
    replayed: z.boolean().optional(),
  }),
  heartbeat: z.strictObject({
    t: z.literal("heartbeat"),
    rssBytes: z.number().min(0),
    cpuUserMs: z.number().min(0),
    cpuSystemMs: z.number().min(0),
    uptimeMs: z.number().min(0),
    ...commandStatus,
  }),
  pong: z.strictObject({ t: z.literal("pong") }),
} as const;

type FromAgentSchemas = typeof fromAgent;
export type FromAgent = {
  [T in keyof FromAgentSchemas]: z.infer<FromAgentSchemas[T]>;
}[keyof FromAgentSchemas];
export type DoneMsg = z.infer<FromAgentSchemas["done"]>;
export type ErrorMsg = z.infer<FromAgentSchemas["error"]>;
/** A command's final answer: what the result cache keeps. */
export type ResultMsg = DoneMsg | ErrorMsg;
export type CommandStatus = Pick<z.infer<FromAgentSchemas["heartbeat"]>, keyof typeof commandStatus>;

/**
 * Error codes agentd sends. `timeout` and `cancelled` carry the tails; `bad_frame` and
 * `bad_message` (id "") end or refuse one frame of the connection.
 */
export type ErrorCode =
  | "bad_frame"
  | "bad_message"
  | "hello_first"
  | "unsupported_version"
  | "spawn_failed"
  | "timeout"
  | "cancelled"
  | "not_running"
  | "op_failed"
  | "command_exited"
  | "no_command"
  | "not_listening"
  | "shutting_down"
  | "internal";

export type Parsed<M> = { ok: true; msg: M } | { ok: false; error: string };

/** A frame from the CP, checked: unknown types, missing or extra fields are named in `error`. */
export function parseToAgent(x: unknown): Parsed<ToAgent> {
  const shaped = pick(toAgent, x);
  if (!shaped.ok) return shaped;
  const msg = shaped.msg;
  if (msg.t !== "op") return { ok: true, msg };
  const op = msg.op;
  if (!isOpName(op)) return { ok: false, error: `op: unknown op "${op.slice(0, 40)}"` };
  const args = opArgs[op].safeParse(msg.args);
  if (!args.success) return { ok: false, error: `op ${op}: ${formatIssues(args.error, "args").join("; ")}` };
  return { ok: true, msg: { t: "op", id: msg.id, op, args: args.data } as OpMsg }; // op and args checked together above
}

/** A frame from agentd, checked the same way. */
export function parseFromAgent(x: unknown): Parsed<FromAgent> {
  return pick(fromAgent, x);
}

function isOpName(op: string): op is OpName {
  return Object.hasOwn(opArgs, op);
}

function pick<S extends Record<string, z.ZodType>>(schemas: S, x: unknown): Parsed<z.infer<S[keyof S]>> {
  if (typeof x !== "object" || x === null || Array.isArray(x) || x instanceof Uint8Array) {
    return { ok: false, error: "a frame must be a msgpack map" };
  }
  const t = "t" in x ? x.t : undefined;
  if (typeof t !== "string") return { ok: false, error: "t: missing message type" };
  if (!Object.hasOwn(schemas, t)) return { ok: false, error: `t: unknown message type "${t.slice(0, 40)}"` };
  const result = (schemas[t] as S[keyof S]).safeParse(x);
  if (!result.success) return { ok: false, error: formatIssues(result.error, t).join("; ") };
  return { ok: true, msg: result.data };
}
