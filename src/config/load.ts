import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { configSchema, type FileConfig } from "./schema.ts";

/** A config file that cannot be used; the message names the file and each bad field. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly file: string,
    readonly issues: string[],
  ) {
    super(`${file}: ${issues.length === 1 ? issues[0] : `\n  ${issues.join("\n  ")}`}`);
  }
}

function describe(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const path = i.path.map(String).join(".");
    let message = i.message;
    if (i.code === "unrecognized_keys") message = `unknown field(s): ${i.keys.join(", ")}`;
    return path ? `${path}: ${message}` : message;
  });
}

/** Validates an already-parsed config object. */
export function parseConfig(raw: unknown, file = "config"): FileConfig {
  const parsed = configSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(file, describe(parsed.error));
  return parsed.data;
}

/** Reads and validates corral.yaml (YAML or JSON). */
export function loadConfig(file: string): FileConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(file, [`cannot read: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML: ${(err as Error).message.split("\n")[0]}`]);
  }
  return parseConfig(raw, file);
}
