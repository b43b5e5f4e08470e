import { readFileSync } from "node:fs";

/** A credentials file named in the settings cannot be used (the CLI: exit 1, this message). */
export class NatsCredentialsError extends Error {
  override name = "NatsCredentialsError";
}

/** A credentials file corral was told to use, or an error that names the file (never its content). */
export function readAuthFile(path: string, what: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (err) {
    throw new NatsCredentialsError(
      `cannot read the NATS ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
    );
  }
}

const SEED = /^S[A-Z2-7]{57}$/;

/** NATS_NKEY / --nats-nkey / nats.nkey: the seed itself, or a file holding it (as `nats --nkey`). */
export function seedOf(value: string): Uint8Array {
  const text = SEED.test(value) ? value : new TextDecoder().decode(readAuthFile(value, "nkey")).trim();
  const seed = text.split(/\s+/).find((w) => SEED.test(w));
  if (!seed)
    throw new NatsCredentialsError(`no nkey seed (S…) in ${SEED.test(value) ? "the value given" : value}`);
  return new TextEncoder().encode(seed);
}
