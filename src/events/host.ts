import { z } from "../vendor/zod.ts";
import { defineEvent } from "./define.ts";

/** The daemon instance itself (aggregate kind `host`, id = the instance name). */

export const ReapDegraded = defineEvent({
  type: "ReapDegraded",
  v: 1,
  kind: "host",
  doc: "A runtime could not be listed at start-up, so what it lost was not reaped; the next start tries again.",
  schema: z.object({ runtime: z.enum(["docker", "process"]), reason: z.string().min(1).max(500) }),
});

export const hostEvents = [ReapDegraded] as const;
