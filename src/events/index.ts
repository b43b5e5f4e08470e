export * from "./catalogue.ts";
export * from "./command.ts";
export * from "./define.ts";
export * from "./envelope.ts";
export * from "./errors.ts";
export * from "./id.ts";
