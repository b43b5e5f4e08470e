import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import type Docker from "dockerode";
import { engineMessage, RuntimeError, statusOf } from "./errors.ts";
import { type TarEntry, tarball } from "./tar.ts";
import type { AgentTemplate } from "./types.ts";

export const LOCAL_IMAGE = "corral/busybox:local";

const BUSYBOX_PATHS = ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox", "/usr/sbin/busybox"];

/** Applets linked when `busybox --list` cannot be asked (it always can on a real busybox). */
const FALLBACK_APPLETS = ["sh", "sleep", "cat", "env", "ls", "wget", "echo", "kill", "ps", "true", "false"];

const building = new Map<string, Promise<string>>();

/**
 * The image corral runs agents in when nothing else is configured, and that the tests use: a
 * busybox-static rootfs imported locally, because this engine may not be able to pull. Built once
 * (per engine and name) if missing; returns the image name.
 */
export function ensureLocalImage(docker: Docker, name = LOCAL_IMAGE): Promise<string> {
  let p = building.get(name);
  if (!p) {
    p = buildIfMissing(docker, name).finally(() => building.delete(name));
    building.set(name, p);
  }
  return p;
}

async function buildIfMissing(docker: Docker, name: string): Promise<string> {
  try {
    await docker.getImage(name).inspect();
    return name;
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  const busybox = BUSYBOX_PATHS.find((p) => existsSync(p));
  if (!busybox) {
    throw new RuntimeError(
      "busybox_missing",
      `cannot build ${name}: no busybox binary at ${BUSYBOX_PATHS.join(", ")} (apt-get install busybox-static)`,
      { image: name },
    );
  }
  const [repo, tag = "latest"] = splitTag(name);
  const stream = await docker.importImage(Readable.from([busyboxRootfs(busybox)]), {
    repo,
    tag,
    changes: ['CMD ["/bin/sh"]'],
  } as object);
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => {
      const failed = err ?? out.find((o) => o.error);
      if (failed) reject(new Error(`docker import of ${name} failed: ${engineMessage(failed)}`));
      else resolve();
    });
  });
  return name;
}

function splitTag(name: string): [string, string | undefined] {
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  return colon > slash ? [name.slice(0, colon), name.slice(colon + 1)] : [name, undefined];
}

/** /bin/busybox plus a symlink per applet, /tmp, /etc/passwd; /usr and /lib come from binds. */
function busyboxRootfs(busybox: string): Buffer {
  const real = realpathSync(busybox);
  const data = readFileSync(real);
  let applets = FALLBACK_APPLETS;
  try {
    applets = execFileSync(real, ["--list"], { encoding: "utf8" }).split("\n").filter(Boolean);
  } catch {
    // Old or odd builds without --list: the fallback set covers what agents need.
  }
  const entries: TarEntry[] = [
    { type: "dir", path: "bin" },
    { type: "dir", path: "etc" },
    { type: "dir", path: "root", mode: 0o700 },
    { type: "dir", path: "tmp", mode: 0o1777 },
    { type: "file", path: "bin/busybox", data, mode: 0o755 },
    {
      type: "file",
      path: "etc/passwd",
      data: Buffer.from("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
    },
    { type: "file", path: "etc/group", data: Buffer.from("root:x:0:\nnogroup:x:65534:\n") },
  ];
  for (const a of new Set(applets)) {
    if (a !== "busybox" && /^[\w.[-]+$/.test(a))
      entries.push({ type: "symlink", path: `bin/${a}`, target: "busybox" });
  }
  return tarball(entries);
}

export interface NodeInContainer {
  /** Read-only binds that make the host's node binary and its shared libraries visible. */
  mounts: NonNullable<AgentTemplate["mounts"]>;
  /** argv prefix: the node binary's path, the same inside the container as on the host. */
  command: string[];
}

/**
 * How to run the host's Node inside a bare busybox container: bind /usr, the dynamic loader's
 * directories (/lib, /lib64, from wherever they really live — /usr/lib on merged-/usr systems)
 * and, when node is installed outside /usr (nvm, /opt), its install prefix. All read-only.
 */
export function nodeInContainer(execPath = process.execPath): NodeInContainer {
  const node = realpathSync(execPath);
  const mounts: NodeInContainer["mounts"] = [{ source: "/usr", target: "/usr", readOnly: true }];
  for (const dir of ["/lib", "/lib64"]) {
    if (existsSync(dir)) mounts.push({ source: realpathSync(dir), target: dir, readOnly: true });
  }
  if (!node.startsWith("/usr/")) {
    // e.g. ~/.nvm/versions/node/v20/bin/node → bind ~/.nvm/versions/node/v20
    const prefix = dirname(dirname(node));
    mounts.push({ source: prefix, target: prefix, readOnly: true });
  }
  return { mounts, command: [node] };
}
