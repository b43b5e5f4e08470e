export { PortAllocator, type PortAllocatorOptions } from "./allocator.ts";
export { portEnv, portLetter, portUrls } from "./env.ts";
export { PortAllocationCancelledError, PortConflictError, PortsExhaustedError } from "./errors.ts";
export { bindProbe, type PortProbe } from "./probe.ts";
export {
  DEFAULT_PORT_RANGE,
  DEFAULT_PORTS_PER_AGENT,
  formatRange,
  type PortConfig,
  PortConfigError,
  type PortRange,
  parseHostUrl,
  parsePortConfig,
  parsePortRange,
  rangeSize,
  trimTrailingSlashes,
} from "./range.ts";
