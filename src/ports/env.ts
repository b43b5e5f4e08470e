import { trimTrailingSlashes } from "./range.ts";

/** 0 → A, 25 → Z, 26 → AA, 27 → AB, … (bijective base 26, like spreadsheet columns). */
export function portLetter(index: number): string {
  if (!Number.isInteger(index) || index < 0) throw new RangeError(`not a port index: ${index}`);
  let name = "";
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) {
    name = String.fromCharCode(65 + ((n - 1) % 26)) + name;
  }
  return name;
}

/** `${hostUrl}:${port}` per port, or [] without a hostUrl. Slashes are trimmed here too: no `http://host/:8000`. */
export function portUrls(ports: readonly number[], hostUrl?: string): string[] {
  const base = hostUrl ? trimTrailingSlashes(hostUrl) : "";
  return base ? ports.map((p) => `${base}:${p}`) : [];
}

/**
 * The agent's environment for its ports: `CORRAL_PORT_A`, `CORRAL_URL_A` (with a hostUrl), …, plus
 * the `AVAILABLE_LOCALHOST_PORT_A` / `AVAILABLE_LOCALHOST_URL_A` names that agents written for
 * that convention read.
 */
export function portEnv(ports: readonly number[], hostUrl?: string): Record<string, string> {
  const urls = portUrls(ports, hostUrl);
  const env: Record<string, string> = {};
  ports.forEach((port, i) => {
    const letter = portLetter(i);
    env[`CORRAL_PORT_${letter}`] = String(port);
    env[`AVAILABLE_LOCALHOST_PORT_${letter}`] = String(port);
    const url = urls[i];
    if (url !== undefined) {
      env[`CORRAL_URL_${letter}`] = url;
      env[`AVAILABLE_LOCALHOST_URL_${letter}`] = url;
    }
  });
  return env;
}
