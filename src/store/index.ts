export * from "./errors.ts";
export * from "./event-store.ts";
export * from "./publisher.ts";
export * from "./reader.ts";
export * from "./records.ts";
export * from "./snapshots.ts";
export * from "./stream.ts";
export * from "./subjects.ts";
