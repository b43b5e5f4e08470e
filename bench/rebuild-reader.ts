// One rebuild reader in a process of its own, for bench/rebuild.ts's mark cost: the worldview
// rebuilt from zero `runs` times on the server at <url>, checking marks with the key in <key file>
// (or, given "off", reading without marks). Prints {"ms": [...]} on its last line.
//   node --import tsx bench/rebuild-reader.ts <url> <key file | off> <runs>
import { connectNats } from "../src/nats/connect.ts";
import { CheckpointStore } from "../src/projections/checkpoints.ts";
import { EventStore } from "../src/store/event-store.ts";
import { readEventKey } from "../src/store/key-file.ts";
import { worldview } from "./rebuild.ts";

const [url, keyFile, runs] = process.argv.slice(2);
if (!url || !keyFile || !runs) throw new Error("usage: rebuild-reader.ts <url> <key file | off> <runs>");
const key = keyFile === "off" ? undefined : readEventKey(keyFile);
if (keyFile !== "off" && !key) throw new Error(`no event key in ${keyFile}`);
const nc = await connectNats(url, { name: "bench-rebuild-reader" });
const store = await EventStore.open(nc, { integrity: key ? { key } : "off" });
const checkpoints = await CheckpointStore.open(nc);
const ms: number[] = [];
for (let i = 0; i < Number(runs); i++) ms.push((await worldview(store, checkpoints)).ms);
store.close();
await nc.close();
console.log(JSON.stringify({ ms }));
