import { dockerSkip } from "./helpers/docker.ts";
import { poolScenarios } from "./helpers/pool-scenarios.ts";

poolScenarios("docker", await dockerSkip());
