import { it } from "node:test";
import type Docker from "dockerode";
import { dockerClient, dockerUnavailableReason } from "../../src/runtime/detect.ts";
import { ensureNodeImage, NODE_IMAGE } from "../../src/runtime/docker-image.ts";
import { LABEL_INSTANCE, LABEL_MANAGED, LABEL_TEST_RUN } from "../../src/runtime/labels.ts";
import { onTeardown, type Undo } from "./teardown.ts";

/** CI sets it (.ci/run): there a Docker test that cannot run fails instead of skipping. */
const REQUIRED = process.env.CORRAL_REQUIRE_DOCKER === "1";

let availability: Promise<{ ok: true } | { ok: false; reason: string }> | undefined;

/**
 * Whether the docker tests can run here (an engine, and the node image made for it), and if not,
 * why (for a loud skip). An engine that is there but slow (a loaded machine) is asked again for up
 * to a minute; one that is not there at all answers at once — unless Docker is required, when it
 * may still be starting, and when no answer at all throws (the test file fails, naming the reason).
 */
export function dockerAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  availability ??= (async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const reason = await dockerUnavailableReason({ timeoutMs: 5_000 });
      if (reason === undefined) {
        // An engine that cannot run this host's node (macOS, another CPU) cannot run these tests.
        const unusable = await testImage().then(
          () => undefined,
          (err: Error) => err.message,
        );
        if (unusable === undefined) return { ok: true };
        if (REQUIRED) throw new Error(`CORRAL_REQUIRE_DOCKER=1, but ${unusable}`);
        return { ok: false, reason: unusable };
      }
      if (REQUIRED && Date.now() > deadline) throw new Error(`CORRAL_REQUIRE_DOCKER=1, but ${reason}`);
      if (!REQUIRED && (!/did not answer/.test(reason) || Date.now() > deadline))
        return { ok: false, reason };
      await new Promise((r) => setTimeout(r, 1_000));
    }
  })();
  return availability;
}

/**
 * The `skip` option for a Docker suite: false when an engine answers, else the reason — said
 * loudly, and counted as a skipped test (Node 20 leaves a skipped describe out of the summary).
 */
export async function dockerSkip(): Promise<string | false> {
  const available = await dockerAvailable();
  if (available.ok) return false;
  warnSkipped(available.reason);
  const reason = `no docker engine: ${available.reason}`;
  it("docker engine is reachable", { skip: reason }, () => {});
  return reason;
}

/** Prints the reason where nobody can miss it: a skipped docker suite is not a passed one. */
export function warnSkipped(reason: string): void {
  const line = "=".repeat(78);
  console.warn(`\n${line}\n  DOCKER RUNTIME TESTS SKIPPED: ${reason}\n${line}\n`);
}

let image: Promise<string> | undefined;

/** The node image the tests run agents in, imported locally once (no pulls). */
export function testImage(docker: Docker = dockerClient()): Promise<string> {
  image ??= ensureNodeImage(docker, NODE_IMAGE);
  return image;
}

/** Labels for a container a test creates itself: the run's mark, as corral's own containers carry. */
export function runLabels(): Record<string, string> {
  const run = process.env.CORRAL_TEST_RUN;
  return run ? { [LABEL_TEST_RUN]: run } : {};
}

/** Force-removes a container a test created, at the end of the file (or now, by the Undo). */
export function trackContainer(docker: Docker, id: string): Undo {
  return onTeardown(`container ${id.slice(0, 12)}`, () =>
    docker
      .getContainer(id)
      .remove({ force: true, v: true })
      .catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404) throw err; // already gone is fine
      }),
  );
}

/** Force-removes every container of one corral instance — by label, never by name. */
export async function removeByInstance(docker: Docker, instance: string): Promise<number> {
  const rows = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_INSTANCE}=${instance}`] },
  });
  await Promise.all(
    rows.map((r) =>
      docker
        .getContainer(r.Id)
        .remove({ force: true, v: true })
        .catch(() => {}),
    ),
  );
  return rows.length;
}
