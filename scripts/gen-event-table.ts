// Prints the README's event-type table from the catalogue (the catalogue is the source of truth).
//   node --import tsx scripts/gen-event-table.ts           print the table
//   node --import tsx scripts/gen-event-table.ts --write   replace it in README.md
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { catalogue } from "../src/events/catalogue.ts";

const START = "<!-- event-types:start -->";
const END = "<!-- event-types:end -->";

/** Top-level data fields; `?` marks the ones a writer may leave out (optional or defaulted). */
function fields(schema: z.ZodType): string {
  if (!(schema instanceof z.ZodObject)) return "";
  return Object.entries(schema.shape as Record<string, z.ZodType>)
    .map(([k, f]) => (f.safeParse(undefined).success ? `${k}?` : k))
    .join(", ");
}

/** A markdown table with padded columns, as Biome formats it (so `biome ci` accepts the output). */
function markdownTable(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(3, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  const [head, ...body] = rows;
  return [line(head ?? []), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

export function eventTable(): string {
  const rows = catalogue.map((d) => [
    `\`${d.type}\``,
    d.kind,
    String(d.v),
    fields(d.schema as z.ZodType),
    d.doc.replace(/\|/g, "\\|"),
  ]);
  return markdownTable([["type", "kind", "v", "data", "meaning"], ...rows]);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const table = eventTable();
  if (process.argv.includes("--write")) {
    const path = fileURLToPath(new URL("../README.md", import.meta.url));
    const readme = readFileSync(path, "utf8");
    const a = readme.indexOf(START);
    const b = readme.indexOf(END);
    if (a < 0 || b < a) throw new Error(`README.md lacks the ${START} … ${END} markers`);
    writeFileSync(path, `${readme.slice(0, a + START.length)}\n${table}\n${readme.slice(b)}`);
  } else {
    console.log(table);
  }
}
