import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { type ExecEnd, OUT_END_HEADER, OUT_STREAM_HEADER, outSubject } from "../../api/protocol.ts";
import { headers } from "../../vendor/nats.ts";
import type { OutMsg } from "./session-port.ts";

/**
 * A command's live output on `corral.out.<commandId>` (NATS core: nothing is kept). Published on
 * the connection the API replies on, so a client subscribed before its request gets every chunk
 * and the end marker before the reply (NATS keeps one publisher's order).
 */
export class OutputPublisher {
  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  chunk(o: OutMsg): void {
    const h = headers();
    h.set(OUT_STREAM_HEADER, o.stream);
    this.publish(o.id, o.data, h);
  }

  end(commandId: string, end: ExecEnd): void {
    const h = headers();
    h.set(OUT_END_HEADER, "1");
    this.publish(commandId, new TextEncoder().encode(JSON.stringify(end)), h);
  }

  private publish(commandId: string, data: Uint8Array, h: ReturnType<typeof headers>): void {
    try {
      this.nc.publish(outSubject(commandId), data, { headers: h });
    } catch (err) {
      // Live output is a courtesy: the result (and its tails) is in the reply either way.
      this.log.warn({ err, command: commandId }, "command output not published");
    }
  }
}
