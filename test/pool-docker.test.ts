import { dockerUnavailableReason } from "../src/runtime/index.ts";
import { poolScenarios } from "./helpers/pool-scenarios.ts";

const why = await dockerUnavailableReason();
if (why) {
  console.warn(`\n*** DOCKER POOL TESTS SKIPPED: no Docker engine answers (${why}) ***\n`);
}
poolScenarios("docker", why ? `no Docker engine: ${why}` : false);
