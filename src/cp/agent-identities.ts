import { rmSync } from "node:fs";
import { join } from "node:path";
import { type CorralCa, loadOrCreateCa } from "../identity/ca.ts";
import { writeIdentityFiles } from "../identity/files.ts";
import { controlPlaneName } from "../identity/names.ts";
import type { TlsIdentity } from "../identity/tls.ts";

/**
 * The daemon's side of identity (ARCHITECTURE.md, "Identity"): the corral CA kept under
 * `<stateDir>/identity/` (its key never leaves the disk), this instance's client certificate, and
 * one certificate per agent generation, written where the runtime delivers it read-only.
 */
export class AgentIdentities {
  private constructor(
    private readonly ca: CorralCa,
    private readonly dir: string,
    /** The CN every agentd pins: only this instance may talk to its agents. */
    readonly cpCN: string,
    /** What the control plane dials agents with. */
    readonly tls: TlsIdentity,
  ) {}

  static async open(stateDir: string, instance: string): Promise<AgentIdentities> {
    const dir = join(stateDir, "identity");
    const ca = await loadOrCreateCa(dir);
    // A fresh client certificate per start: short-lived, never stored.
    const cp = await ca.issueControlPlane(instance);
    return new AgentIdentities(ca, dir, controlPlaneName(instance), {
      certPem: cp.certPem,
      keyPem: cp.keyPem,
      caPem: ca.certPem,
    });
  }

  /** Issues a generation's certificate; its files go to a directory of their own. */
  async issue(p: { poolId: string; agentId: string; generation: number }) {
    const issued = await this.ca.issueAgent({ poolId: p.poolId, agentId: p.agentId });
    const identityDir = join(this.agentDir(p.agentId), `g${p.generation}`);
    writeIdentityFiles(identityDir, issued, this.ca.certPem);
    return { identityDir, cpCN: this.cpCN };
  }

  /** Removes the identity files of every generation of an agent that ended. */
  drop(agentId: string): void {
    rmSync(this.agentDir(agentId), { recursive: true, force: true });
  }

  private agentDir(agentId: string): string {
    return join(this.dir, "agents", agentId);
  }
}
