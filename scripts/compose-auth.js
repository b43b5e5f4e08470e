// The credentials docker-compose.yml's NATS runs with, made once:
//   node --import tsx scripts/compose-auth.js [dir]        (default: .corral/nats-auth)
// One nkey per corral user (daemon, client, reader) in <dir>/<user>.nk (0600; the folder 0700),
// the same files `npm start` makes and keeps (existing ones are kept), and <dir>/nats.env with
// their public keys for the server (src/nats/corral-nats.conf reads them). Nothing secret is
// printed; the compose file mounts only the daemon's seed into corral's container.
import { writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { ensureLocalUsers } from "../src/nats/local-auth.ts";

const dir = resolve(process.argv[2] ?? ".corral/nats-auth");
if (!dir.endsWith("/nats-auth")) {
  console.error(`compose-auth: ${dir}: the folder must be named nats-auth (as npm start's is)`);
  process.exit(2);
}
const env = await ensureLocalUsers(dirname(dir));
const lines = Object.entries(env).map(([k, v]) => `${k}=${v}\n`);
writeFileSync(`${dir}/nats.env`, lines.join(""), { mode: 0o644 });
console.log(`NATS users for docker-compose in ${dir}: daemon.nk, client.nk, reader.nk and nats.env`);
