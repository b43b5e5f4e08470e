import { agentSideScenarios } from "./helpers/agent-e2e-scenarios.ts";

agentSideScenarios("process", false);
