import { poolScenarios } from "./helpers/pool-scenarios.ts";

poolScenarios("process", false);
