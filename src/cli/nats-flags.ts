import type { Command } from "commander";
import type { NatsAuth } from "../nats/auth.ts";
import { useCommandLineAuth } from "../nats/command-line-auth.ts";

/**
 * The global `--nats-…` credential flags, over NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_NKEY,
 * NATS_CREDS, NATS_CA, NATS_CERT and NATS_KEY (README "Security"). A password or token on the
 * command line is visible to `ps`: the environment or a file is the better place for it.
 */
interface NatsFlags {
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
  natsNkey?: string;
  natsCreds?: string;
  natsCa?: string;
  natsCert?: string;
  natsKey?: string;
}

export function natsAuthFlags(program: Command): void {
  program
    .option("--nats-creds <f>", "NATS .creds file (default: $NATS_CREDS)")
    .option("--nats-nkey <f>", "NATS nkey seed file (default: $NATS_NKEY)")
    .option("--nats-user <u>", "NATS user (default: $NATS_USER)")
    .option("--nats-password <p>", "NATS password (default: $NATS_PASSWORD; visible to ps)")
    .option("--nats-token <t>", "NATS token (default: $NATS_TOKEN; visible to ps)")
    .option("--nats-ca <f>", "CA certificate to check NATS's TLS with (default: $NATS_CA)")
    .option("--nats-cert <f>", "TLS client certificate for NATS (default: $NATS_CERT)")
    .option("--nats-key <f>", "its private key (default: $NATS_KEY)")
    .hook("preAction", (_program, action) => {
      const f = action.optsWithGlobals<NatsFlags>();
      const auth: NatsAuth = {
        user: f.natsUser,
        password: f.natsPassword,
        token: f.natsToken,
        nkey: f.natsNkey,
        creds: f.natsCreds,
      };
      if (f.natsCa || f.natsCert || f.natsKey) auth.tls = { ca: f.natsCa, cert: f.natsCert, key: f.natsKey };
      useCommandLineAuth(auth);
    });
}
