import { readFileSync } from "node:fs";

/**
 * mark-check.wasm (built from mark-check.c by scripts/build-wasm.sh): the byte loops of event
 * marks. A read's ring (mark-ring.ts) checks batches in an instance of its own; mark-hash.ts
 * lays out a writer's v4 MAC inputs in another, which has no ring.
 */

/** The WebAssembly API as used here (the compiler's libraries here do not declare it). */
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
};

/** What mark-check.c exports; `*_ptr` are addresses in `memory`. */
export interface MarkModule {
  memory: { buffer: ArrayBuffer };
  init_ring(): number;
  ring_ptr(): number;
  ring_size(): number;
  spans_ptr(): number;
  verdicts_ptr(): number;
  prevs_ptr(): number;
  input_ptr(): number;
  out_ptr(): number;
  sums_ptr(): number;
  tags_ptr(): number;
  masks_ptr(): number;
  offset4_ptr(): number;
  nh_key_ptr(): number;
  key_id_ptr(): number;
  max_entries(): number;
  laid_count(): number;
  laid_version(): number;
  input_used(): number;
  init_masks(): void;
  layout(from: number, count: number, cap: number): number;
  sum(e1: number): void;
  compare(): void;
  stage_ptr(n: number): number;
  hash_staged(count: number, dst: number): number;
  mark_texts(): void;
}

/**
 * u32 fields per entry of the module's `spans`: for a read's ring, subject address, subject length,
 * data address, header length, size; for a writer's burst, subject address and length, body
 * address and length, one unused.
 */
export const SPAN = 5;

let compiled: object | undefined;

/** A new instance of the module (compiled once per process). */
export function markModule(): MarkModule {
  compiled ??= new WebAssembly.Module(readFileSync(new URL("./mark-check.wasm", import.meta.url)));
  return new WebAssembly.Instance(compiled).exports as unknown as MarkModule;
}
