// Seeds the base images docker-compose.yml and the Dockerfile name, for a machine that cannot
// pull (CI): `docker import` of a root filesystem made from this machine's own files, tagged with
// the exact names the files use, so both files stay what a user runs. An image that exists is
// never touched (a real one stays real); only missing ones are made, labelled corral.seeded.
//   node --import tsx scripts/compose-seed.js
//     node:20-bookworm-slim  this host's node (must be 20) and npm, /bin/sh, env, their libraries;
//                            the host's CA bundle when NODE_EXTRA_CA_CERTS names one (a proxy that
//                            inspects TLS: `npm ci` in the build must trust it too)
//     nats:2.9               this host's nats-server (must be 2.9) and its libraries
import { execFileSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
} from "node:fs";
import { dirname, join, posix } from "node:path";
import { Readable } from "node:stream";
import Docker from "dockerode";
import { elfInterpreter } from "../src/runtime/elf.ts";
import { hostNodeFiles, nodeRootfs } from "../src/runtime/node-rootfs.ts";
import { tarChunks } from "../src/runtime/tar.ts";

const docker = new Docker();
const SEEDED = "LABEL corral.seeded=scripts/compose-seed.js";

/** Shared objects a binary loads, as `ldd` names them (real paths), the loader included. */
function libsOf(binary) {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  const libs = new Set();
  for (const m of out.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)) libs.add(realpathSync(m[1]));
  return [...libs];
}

/** Entries for each path (a file at its real path, plus a symlink where the path is one). */
function* hostFiles(paths, placed) {
  for (const p of paths) {
    for (const d of parents(p)) {
      if (placed.has(d)) continue;
      placed.add(d);
      yield { type: "dir", path: d.slice(1), mode: 0o755 };
    }
    if (placed.has(p)) continue;
    placed.add(p);
    const real = realpathSync(p);
    if (real !== p) {
      yield { type: "symlink", path: p.slice(1), target: real };
      yield* hostFiles([real], placed);
    } else yield { type: "file", path: p.slice(1), data: readFileSync(p), mode: statSync(p).mode & 0o7777 };
  }
}

function parents(p) {
  const out = [];
  for (let d = posix.dirname(p); d !== "/"; d = posix.dirname(d)) out.unshift(d);
  return out;
}

/** A directory tree as it is on this host (files, dirs, symlinks), at `to` in the image. */
function* tree(from, to) {
  yield { type: "dir", path: to.slice(1), mode: 0o755 };
  for (const name of readdirSync(from).sort()) {
    const src = join(from, name);
    const dst = `${to}/${name}`;
    const st = lstatSync(src);
    if (st.isSymbolicLink()) yield { type: "symlink", path: dst.slice(1), target: readlinkSync(src) };
    else if (st.isDirectory()) yield* tree(src, dst);
    else if (st.isFile())
      yield { type: "file", path: dst.slice(1), data: readFileSync(src), mode: st.mode & 0o7777 };
  }
}

function* nodeImage() {
  const files = hostNodeFiles();
  const placed = new Set();
  for (const e of nodeRootfs(files)) {
    if (e.type === "dir") placed.add(`/${e.path}`);
    else placed.add(`/${e.path}`);
    yield e;
  }
  const sh = realpathSync("/bin/sh");
  const env = realpathSync("/usr/bin/env");
  yield* hostFiles([sh, env, ...libsOf(sh), ...libsOf(env)], placed);
  if (!placed.has("/bin")) yield { type: "dir", path: "bin", mode: 0o755 };
  if (sh !== "/bin/sh") yield { type: "symlink", path: "bin/sh", target: sh };
  if (env !== "/usr/bin/env") yield { type: "symlink", path: "usr/bin/env", target: env };
  const npm = dirname(
    dirname(realpathSync(execFileSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).trim())),
  );
  yield { type: "dir", path: "usr/local/lib", mode: 0o755 };
  yield { type: "dir", path: "usr/local/lib/node_modules", mode: 0o755 };
  yield* tree(npm, "/usr/local/lib/node_modules/npm");
  yield { type: "symlink", path: "usr/local/bin/npm", target: "../lib/node_modules/npm/bin/npm-cli.js" };
  yield { type: "symlink", path: "usr/local/bin/npx", target: "../lib/node_modules/npm/bin/npx-cli.js" };
  const ca = process.env.NODE_EXTRA_CA_CERTS;
  if (ca && existsSync(ca)) {
    yield* ["/etc/ssl", "/etc/ssl/certs"].map((d) => ({ type: "dir", path: d.slice(1), mode: 0o755 }));
    yield { type: "file", path: "etc/ssl/certs/ca-certificates.crt", data: readFileSync(ca), mode: 0o644 };
  }
}

function* natsImage(binary) {
  const placed = new Set();
  yield { type: "dir", path: "tmp", mode: 0o1777 };
  yield { type: "file", path: "nats-server", data: readFileSync(binary), mode: 0o755 };
  const interp = elfInterpreter(binary);
  yield* hostFiles(libsOf(binary), placed);
  if (interp && !placed.has(interp)) yield* hostFiles([interp], placed);
  yield {
    type: "file",
    path: "nats-server.conf",
    data: Buffer.from("port: 4222\nhttp: 8222\n"),
    mode: 0o644,
  };
}

async function exists(name) {
  try {
    await docker.getImage(name).inspect();
    return true;
  } catch (err) {
    if (err.statusCode === 404) return false;
    throw err;
  }
}

async function importImage(name, entries, changes) {
  const [repo, tag] = name.split(":");
  const stream = await docker.importImage(Readable.from(tarChunks(entries)), { repo, tag, changes });
  await new Promise((resolve, reject) =>
    docker.modem.followProgress(stream, (err, out) => {
      const failed = err ?? out.find((o) => o.error);
      failed
        ? reject(new Error(`docker import of ${name} failed: ${failed.error ?? failed.message}`))
        : resolve();
    }),
  );
}

/** Runs `cmd` in the new image once; removes the image again when it does not work. */
async function smoke(name, cmd, want) {
  const out = execFileSync(
    "docker",
    ["run", "--rm", "--network", "none", "--entrypoint", cmd[0], name, ...cmd.slice(1)],
    {
      encoding: "utf8",
    },
  );
  if (!want.test(out)) {
    execFileSync("docker", ["rmi", name]);
    throw new Error(`${name}: ${cmd.join(" ")} printed ${JSON.stringify(out.slice(0, 200))}, not ${want}`);
  }
}

async function seedNode() {
  const name = "node:20-bookworm-slim";
  if (await exists(name)) return console.log(`${name}: present, left as it is`);
  if (!process.versions.node.startsWith("20."))
    throw new Error(`${name}: this host's node is ${process.version}, not 20`);
  const libDirs = [...new Set(hostNodeFiles().libs.map((l) => dirname(l)))];
  const ca = process.env.NODE_EXTRA_CA_CERTS && existsSync(process.env.NODE_EXTRA_CA_CERTS);
  await importImage(name, nodeImage(), [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    `ENV LD_LIBRARY_PATH=${libDirs.join(":")}`,
    `ENV NODE_VERSION=${process.versions.node}`,
    ...(ca ? ["ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt"] : []),
    SEEDED,
    'CMD ["node"]',
  ]);
  await smoke(name, ["/bin/sh", "-c", "node --version && npm --version"], /^v20\.[\s\S]*\n\d+\.\d+/);
  console.log(`${name}: seeded from this host (node ${process.version})`);
}

async function seedNats() {
  const name = "nats:2.9";
  if (await exists(name)) return console.log(`${name}: present, left as it is`);
  const binary = realpathSync(
    execFileSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" }).trim(),
  );
  const version = execFileSync(binary, ["--version"], { encoding: "utf8" }).trim();
  if (!/v2\.9\./.test(version)) throw new Error(`${name}: this host's nats-server is ${version}, not 2.9`);
  await importImage(name, natsImage(binary), [
    SEEDED,
    "EXPOSE 4222 8222 6222",
    'ENTRYPOINT ["/nats-server"]',
    'CMD ["--config", "nats-server.conf"]',
  ]);
  await smoke(name, ["/nats-server", "--version"], /v2\.9\./);
  console.log(`${name}: seeded from this host (${version})`);
}

await seedNode();
await seedNats();
