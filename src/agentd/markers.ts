import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "./files.ts";
import { INIT_STEPS, type InitStep } from "./protocol.ts";

/**
 * One file per init step that succeeded, in agentd's state dir: what `hello-ack.initDone` reports
 * after a reconnect or a restart, so the control plane does not run the plan again.
 */
export class InitMarkers {
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, "init");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  has(step: InitStep): boolean {
    return existsSync(join(this.dir, step));
  }

  mark(step: InitStep): void {
    writeFileAtomic(join(this.dir, step), `${JSON.stringify({ at: new Date().toISOString() })}\n`, 0o600);
  }

  done(): InitStep[] {
    return INIT_STEPS.filter((s) => this.has(s));
  }
}
