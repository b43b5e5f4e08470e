import type { StoredRecord } from "../store/records.ts";
import { colourEnabled, palette } from "./colour.ts";
import { DEFAULT_WIDTH, formatLine, jsonLine } from "./format.ts";

/** Where command output goes: stdout in the CLI, a buffer in tests or in-process callers. */
export interface Out {
  write(text: string): void;
}

export const stdout: Out = { write: (text) => process.stdout.write(text) };

export interface Printer {
  print(r: StoredRecord): void;
}

/** Chooses JSON lines or human lines (coloured only for a terminal) for one output. */
export function recordPrinter(out: Out, json: boolean): Printer {
  if (json) return { print: (r) => out.write(`${jsonLine(r)}\n`) };
  const isTerminal = out === stdout && process.stdout.isTTY === true;
  const c = palette(colourEnabled({ isTTY: isTerminal }));
  const width = isTerminal ? process.stdout.columns || DEFAULT_WIDTH : DEFAULT_WIDTH;
  return { print: (r) => out.write(`${formatLine(r, { palette: c, width })}\n`) };
}
