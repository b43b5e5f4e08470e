import { realpathSync } from "node:fs";
import { basename, posix } from "node:path";
import type Docker from "dockerode";
import { AGENTD_PORT, agentdArgs, agentdEnv, PACKAGE_ROOT, rootedArgs } from "./agentd-launch.ts";
import { aliases, hostNodeFiles, type NodeFiles } from "./node-rootfs.ts";
import type { AgentdSpec, CreateSpec } from "./types.ts";

/** Where corral's package root (dist/ or sources + node_modules) is mounted, read-only. */
export const PKG_IN_CONTAINER = "/opt/corral/pkg";
/** Where the agent's identity dir is mounted, read-only. */
export const IDENTITY_IN_CONTAINER = "/run/corral/identity";
/** agentd's own state (agentd.json, the commands it has run): in the container's writable layer. */
export const AGENTD_STATE_IN_CONTAINER = "/var/lib/corral-agentd";
/** Where this host's Node (binary, loader, libraries) is mounted into an image that has none. */
export const HOST_NODE_IN_CONTAINER = "/opt/corral/node";

type Mount = NonNullable<Docker.HostConfig["Mounts"]>[number];

export interface AgentdContainer {
  /** Entrypoint + Cmd: agentd, run by the image's node or by the one mounted from this host. */
  entrypoint: string[];
  cmd: string[];
  env: Record<string, string>;
  mounts: Mount[];
}

/** corral's own images carry a Node on PATH (docker-image.ts); any other image gets this host's. */
export function imageHasNode(image: string): boolean {
  return image.startsWith("corral/node:");
}

/**
 * The container side of agentd: the template's command becomes CORRAL_AGENT_COMMAND (agentd starts
 * it, without the image's entrypoint), agentd listens on AGENTD_PORT on every address of the
 * container's own network namespace (its IP; nothing is published on the host).
 */
export function agentdContainer(spec: CreateSpec & { agentd: AgentdSpec }, image: string): AgentdContainer {
  const args = rootedArgs(agentdArgs(), PKG_IN_CONTAINER);
  const node = imageHasNode(image) ? { argv: ["node"], mounts: [] } : mountedNode(hostNodeFilesOnce());
  const [first = "node", ...rest] = [...node.argv, ...args];
  const ro = (source: string, target: string): Mount => ({
    Type: "bind",
    Source: source,
    Target: target,
    ReadOnly: true,
  });
  return {
    entrypoint: [first],
    cmd: rest,
    env: agentdEnv(spec, {
      identityDir: IDENTITY_IN_CONTAINER,
      listen: `0.0.0.0:${AGENTD_PORT}`,
      stateDir: AGENTD_STATE_IN_CONTAINER,
      command: spec.template.command,
    }),
    mounts: [
      ro(PACKAGE_ROOT, PKG_IN_CONTAINER),
      ro(spec.agentd.identityDir, IDENTITY_IN_CONTAINER),
      ...node.mounts.map((m) => ro(m.source, m.target)),
    ],
  };
}

let nodeFiles: NodeFiles | undefined;
function hostNodeFilesOnce(): NodeFiles {
  nodeFiles ??= hostNodeFiles();
  return nodeFiles;
}

/**
 * This host's Node for an image without one: the binary and every library it maps, each mounted
 * read-only under HOST_NODE_IN_CONTAINER/lib by every name it is known by, and run through its own
 * loader with `--library-path`, so nothing of the image's libc is used. Limits: the image must be
 * Linux on this host's CPU; Node's child processes by `process.execPath` would run the loader, and
 * name lookups still read the image's /etc (nsswitch.conf, hosts, passwd).
 */
export function mountedNode(files: NodeFiles): {
  argv: string[];
  mounts: { source: string; target: string }[];
} {
  const lib = `${HOST_NODE_IN_CONTAINER}/lib`;
  const bin = `${HOST_NODE_IN_CONTAINER}/bin/node`;
  const mounts = [{ source: files.node, target: bin }];
  const taken = new Set<string>();
  for (const path of files.libs) {
    for (const name of [basename(path), ...aliases(path).map((a) => basename(a))]) {
      if (taken.has(name)) continue;
      taken.add(name);
      mounts.push({ source: path, target: posix.join(lib, name) });
    }
  }
  if (!files.interpreter) return { argv: [bin], mounts };
  const real = realpathSync(files.interpreter);
  const loader = posix.join(lib, basename(real));
  if (!taken.has(basename(real))) mounts.push({ source: real, target: loader });
  return { argv: [loader, "--library-path", lib, bin], mounts };
}
