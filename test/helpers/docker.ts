import type Docker from "dockerode";
import { dockerClient, dockerUnavailableReason } from "../../src/runtime/detect.ts";
import { ensureLocalImage, LOCAL_IMAGE } from "../../src/runtime/docker-image.ts";
import { LABEL_INSTANCE, LABEL_MANAGED } from "../../src/runtime/labels.ts";

/** Whether the docker tests can run here, and if not, why (for a loud skip). */
export async function dockerAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  const reason = await dockerUnavailableReason({ timeoutMs: 1500 });
  return reason === undefined ? { ok: true } : { ok: false, reason };
}

/** Prints the reason where nobody can miss it: a skipped docker suite is not a passed one. */
export function warnSkipped(reason: string): void {
  const line = "=".repeat(78);
  console.warn(`\n${line}\n  DOCKER RUNTIME TESTS SKIPPED: ${reason}\n${line}\n`);
}

let image: Promise<string> | undefined;

/** The busybox image the tests run agents in, imported locally once (no pulls). */
export function testImage(docker: Docker = dockerClient()): Promise<string> {
  image ??= ensureLocalImage(docker, LOCAL_IMAGE);
  return image;
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
