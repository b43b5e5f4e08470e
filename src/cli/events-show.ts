import type { EventStore } from "../store/event-store.ts";
import { CliError, EXIT } from "./exit.ts";
import { jsonLine, prettyJson } from "./format.ts";
import type { Out } from "./output.ts";

/** `corral events show <seq>`: one stored record, decoded or with the reason it cannot be. */
export async function show(store: EventStore, seq: number, json: boolean, out: Out): Promise<void> {
  const record = await store.get(seq).catch((err: Error) => {
    // Older servers answer a missing sequence with an error instead of null.
    if (/no message found|not found/i.test(err.message)) return null;
    throw err;
  });
  if (!record) throw new CliError(`no event at stream sequence ${seq} in ${store.stream}`, EXIT.failure);
  out.write(`${json ? jsonLine(record) : prettyJson(record)}\n`);
}
