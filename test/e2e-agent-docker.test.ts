import { agentSideScenarios } from "./helpers/agent-e2e-scenarios.ts";
import { dockerSkip } from "./helpers/docker.ts";

agentSideScenarios("docker", await dockerSkip());
