import { dirname } from "node:path";
import { Readable } from "node:stream";
import type Docker from "dockerode";
import { AGENTS_IN_IMAGE, agentFiles, agentsDigest } from "./builtin-agents.ts";
import { engineMessage, RuntimeError, statusOf } from "./errors.ts";
import { hostNodeFiles, NODE_IN_IMAGE, type NodeFiles, nodeRootfs } from "./node-rootfs.ts";
import { tarChunks } from "./tar.ts";

/**
 * The image corral runs its built-in agent in, and the tests their containers: this host's own
 * Node and the libraries it loads, plus corral's agents (src/agents) — no shell, no package
 * manager, no pull. Tagged with the Node version and a digest of the agents, so a new Node or a
 * changed agent makes a new image.
 */
export const NODE_IMAGE = `corral/node:${process.versions.node}-local-${agentsDigest()}`;

/** A command for a container of NODE_IMAGE: `node -e <script>` (there is no shell to ask). */
export function nodeScript(script: string): string[] {
  return ["node", "-e", script];
}

/** Sleeps until stopped, the way `sleep` would (SIGTERM ends it: no handler). */
export const SLEEP = nodeScript("setInterval(() => {}, 1 << 30)");

const building = new Map<string, Promise<string>>();

/**
 * Builds NODE_IMAGE (or `name`) by `docker import` when the engine lacks it; returns its name.
 * Concurrent calls share one build. Rejects with `image_unavailable` when this host's Node cannot
 * run on this engine (not Linux, another CPU) or the built image does not run it.
 */
export function ensureNodeImage(docker: Docker, name = NODE_IMAGE): Promise<string> {
  let p = building.get(name);
  if (!p) {
    p = buildIfMissing(docker, name).finally(() => building.delete(name));
    building.set(name, p);
  }
  return p;
}

const DOCKER_ARCH: Partial<Record<NodeJS.Architecture, string>> = {
  x64: "amd64",
  arm64: "arm64",
  arm: "arm",
  ia32: "386",
  ppc64: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
};

async function buildIfMissing(docker: Docker, name: string): Promise<string> {
  try {
    await docker.getImage(name).inspect();
    return name;
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  const unavailable = (why: string, cause?: unknown) =>
    new RuntimeError("image_unavailable", `cannot make ${name}: ${why}`, { image: name }, { cause });
  const engine = await docker.version();
  const arch = DOCKER_ARCH[process.arch] ?? process.arch;
  if (engine.Os !== "linux" || engine.Arch !== arch) {
    throw unavailable(
      `the engine runs ${engine.Os}/${engine.Arch} containers; this host's node is ${process.platform}/${arch}`,
    );
  }
  let files: NodeFiles;
  try {
    files = hostNodeFiles();
  } catch (err) {
    throw unavailable(`cannot collect this host's node: ${(err as Error).message}`, err);
  }
  const [repo, tag = "latest"] = splitTag(name);
  const libDirs = [...new Set(files.libs.map((l) => dirname(l)))];
  const agents = agentFiles().map((f) => ({ path: `${AGENTS_IN_IMAGE}/${f.name}`, data: f.data }));
  const stream = await docker.importImage(Readable.from(tarChunks(nodeRootfs(files, agents))), {
    repo,
    tag,
    changes: [
      "ENV PATH=/usr/local/bin:/usr/bin:/bin",
      // The loader finds the libraries where the host had them, with or without an ld.so.cache.
      `ENV LD_LIBRARY_PATH=${libDirs.join(":")}`,
      `CMD ["${NODE_IN_IMAGE}"]`,
    ],
  } as object);
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => {
      const failed = err ?? out.find((o) => o.error);
      if (failed) reject(new Error(`docker import of ${name} failed: ${engineMessage(failed)}`));
      else resolve();
    });
  });
  const broken = await smokeTest(docker, name);
  if (broken) {
    await docker
      .getImage(name)
      .remove({ force: true })
      .catch(() => {});
    throw unavailable(`node does not run in it: ${broken}`);
  }
  return name;
}

/** Runs `node -e` once in the new image: undefined when it works, else what went wrong. */
async function smokeTest(docker: Docker, image: string): Promise<string | undefined> {
  const c = await docker.createContainer({
    Image: image,
    Cmd: nodeScript("require('os').userInfo(); process.stdout.write('ok')"),
    NetworkDisabled: true,
  });
  try {
    await c.start();
    const { StatusCode } = (await c.wait()) as { StatusCode: number };
    if (StatusCode === 0) return undefined;
    const logs = await c.logs({ stdout: true, stderr: true });
    return `exit ${StatusCode}: ${demux(logs).trim().slice(-500)}`;
  } finally {
    await c.remove({ force: true }).catch(() => {});
  }
}

/** The text of a non-TTY container's log: frames of an 8-byte header (stream, size) and a payload. */
function demux(buf: Buffer): string {
  let text = "";
  for (let i = 0; i + 8 <= buf.length; ) {
    const size = buf.readUInt32BE(i + 4);
    text += buf.toString("utf8", i + 8, i + 8 + size);
    i += 8 + size;
  }
  return text;
}

function splitTag(name: string): [string, string | undefined] {
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  return colon > slash ? [name.slice(0, colon), name.slice(colon + 1)] : [name, undefined];
}
