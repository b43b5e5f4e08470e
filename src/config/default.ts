import { existsSync } from "node:fs";
import { loadConfig, parseConfig } from "./load.ts";
import type { FileConfig } from "./schema.ts";

/**
 * Without a corral.yaml: one pool of the built-in hello agent (docker when an engine answers,
 * else local processes), two warm, each with two host ports a newcomer can curl.
 */
export const DEFAULT_CONFIG = {
  pools: {
    default: {
      runtime: "auto",
      min: 1,
      max: 4,
      warm: 2,
      idleTimeout: "5m",
      recycle: { maxLeases: 20, maxAge: "1h" },
      maintenanceInterval: "2s",
      leaseTtl: "5m",
      ports: { range: "8100-8199", perAgent: 2, hostUrl: "http://localhost" },
    },
  },
};

/** The named file, else ./corral.yaml when present, else the default pool. */
export function configFrom(file?: string): { config: FileConfig; source: string } {
  if (file) return { config: loadConfig(file), source: file };
  if (existsSync("corral.yaml")) return { config: loadConfig("corral.yaml"), source: "corral.yaml" };
  return {
    config: parseConfig(DEFAULT_CONFIG, "built-in default config"),
    source: "built-in default config",
  };
}
