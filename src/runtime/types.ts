// The contract between the control plane and wherever agents actually run. The pool supervisor
// codes against this; `docker.ts` and `process.ts` implement it.

export type RuntimeKind = "docker" | "process";

export interface AgentTemplate {
  image?: string; // docker only
  command: string[]; // argv; for process: argv[0] is the executable
  env?: Record<string, string>;
  workdir?: string; // docker: WorkingDir; process: default is a per-agent dir under stateDir
  mounts?: { source: string; target: string; readOnly?: boolean }[]; // docker binds; process: ignored
  /** docker HostConfig; the process runtime ignores limits (no cgroups of its own). */
  limits?: { memoryMb?: number; cpus?: number; pids?: number };
  stopGraceMs?: number; // default 2000
}

export interface CreateSpec {
  instance: string; // the corral daemon instance that owns it (label corral.instance)
  poolId: string;
  agentId: string;
  generation: number;
  template: AgentTemplate;
  env: Record<string, string>; // extra env (CORRAL_AGENT_ID, CORRAL_PORT_A, ...) merged over template.env
  ports: number[]; // host ports to publish 1:1 (docker -p bind:p:p); process: just env
  bind?: string; // docker: the host address ports are published on (default 127.0.0.1); process: unused
  /**
   * Run agentd (src/agentd) as the instance's main process, and the template's command as its
   * child. Absent: the template's command is the instance itself (the pre-agentd path).
   */
  agentd?: AgentdSpec;
}

export interface AgentdSpec {
  /** Host directory holding agent.crt, agent.key and ca.crt (docker mounts it read-only). */
  identityDir: string;
  /** The CN agentd accepts as the control plane. */
  cpCN: string;
}

/** Where the control plane dials an instance's agentd. */
export interface AgentdEndpoint {
  host: string;
  port: number;
}

export type InstanceState =
  | "created"
  | "running"
  | "paused"
  | "restarting"
  | "exited"
  | "dead"
  | "removing"
  | "unknown";

export interface RuntimeInstance {
  id: string; // container id, or process instance id
  instance: string;
  poolId: string;
  agentId: string;
  generation: number;
  state: InstanceState;
  pid?: number;
  exitCode?: number;
  startedAt?: number;
  /** Added: container name / process command line, for humans (logs, `corral ps`). */
  name?: string;
  /** Added: epoch ms when the runtime created it. */
  createdAt?: number;
  /**
   * Where this host reaches the instance's ports directly, not through a proxy: the container's
   * IP on its network (docker-proxy accepts on a published port before anything listens
   * behind it), 127.0.0.1 for a process. Absent when not running.
   */
  address?: string;
}

export interface RuntimeEvent {
  // normalised from docker events / process watching
  type: "create" | "start" | "restart" | "pause" | "unpause" | "die" | "stop" | "kill" | "oom" | "destroy";
  id: string;
  poolId?: string;
  agentId?: string;
  generation?: number;
  at: number;
  exitCode?: number;
  /**
   * Added: true when the runtime inferred the event by re-listing (after a gap in the event
   * stream, or for a process that died while nobody watched) rather than observing it.
   */
  reconciled?: boolean;
}

export interface Runtime {
  readonly kind: RuntimeKind;
  readonly instance: string;
  create(spec: CreateSpec): Promise<RuntimeInstance>; // created, not started
  start(id: string): Promise<void>;
  stop(id: string, graceMs?: number): Promise<void>; // SIGTERM, grace, then SIGKILL; idempotent
  remove(id: string): Promise<void>; // force (stops first); idempotent: unknown id is fine
  inspect(id: string): Promise<RuntimeInstance | null>;
  /**
   * Where agentd listens for the control plane: docker, the container's IP and AGENTD_PORT;
   * process, 127.0.0.1 and the port agentd wrote to its agentd.json. Null while it is not (yet)
   * running or was created without `agentd`.
   */
  endpoint(id: string): Promise<AgentdEndpoint | null>;
  list(filter?: { poolId?: string; agentId?: string }): Promise<RuntimeInstance[]>; // only this instance's, every state
  /**
   * Live; start time taken before the initial list. At-least-once: after a gap the runtime
   * re-lists and emits what changed (`reconciled: true`), and replays can repeat an event.
   * To get a consistent picture, subscribe first, then `list()`.
   */
  events(onEvent: (e: RuntimeEvent) => void): { close(): void };
  stats(id: string): Promise<{ memoryBytes?: number; cpuPercent?: number; pids?: number } | null>;
  /** Cheap, synchronous health check for the acquire hot path: the runtime's live view (kept by events + periodic re-list), not an RPC. */
  isRunning(id: string): boolean;
  close(): Promise<void>; // stops watchers; never stops agents (they outlive the daemon)
}
