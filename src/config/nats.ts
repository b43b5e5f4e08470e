import type { NatsAuth } from "../nats/auth.ts";
import { z } from "../vendor/zod.ts";

/**
 * corral.yaml's `nats`: a URL, or the URL with credentials (README "Security"). The environment
 * and the command line override each field; files are read when corral connects.
 */
const text = z.string().min(1);

const natsObject = z
  .object({
    url: text.optional(),
    user: text.optional(),
    password: text.optional(),
    token: text.optional(),
    /** An nkey seed file (or the seed itself). */
    nkey: text.optional(),
    /** A .creds file. */
    creds: text.optional(),
    tls: z.object({ ca: text.optional(), cert: text.optional(), key: text.optional() }).strict().optional(),
  })
  .strict();

export const natsSettings = z.union([text.transform((url) => ({ url })), natsObject], {
  error: "expected a URL, or { url, user, password, token, nkey, creds, tls: { ca, cert, key } }",
});

export type NatsSettings = z.output<typeof natsSettings>;

/** The credentials part of the settings. */
export function natsAuthOf(settings: NatsSettings | undefined): NatsAuth | undefined {
  if (!settings) return undefined;
  const { url: _url, ...auth } = settings;
  return auth;
}
