// Types of mark-bytes.mjs (plain JavaScript, shared with the mark worker).
export declare const MARK_HEADER: "Corral-Mark";
export declare const KEY_BLOCK: 64;
export declare const V2_MAC_CHARS: 43;
export declare const V3_MAC_CHARS: 22;
export declare const MIDDLE: 12;
export declare const PREFIX: "v3.";
export declare const ID_CHARS: 8;
export declare function markVersion(data: Uint8Array, from: number): number | undefined;
export declare function markValueStart(data: Uint8Array, begin: number, end: number): number;
export declare function markValueEnd(data: Uint8Array, from: number, end: number): number;
export declare function parseMarkBytes(data: Uint8Array, from: number, to: number): number;
export declare function namesKey(data: Uint8Array, from: number, id: string): boolean;
export declare function tagChars(tags: Uint8Array, at: number, out: Uint8Array): Uint8Array;
export declare function writeMiddle(s: Uint8Array, at: number, prev: number, length: number): number;
export declare const STAGED: {
  readonly valid: 0;
  readonly missing: 1;
  readonly malformed: 2;
  readonly "other-key": 3;
  readonly mismatch: 4;
};
export declare class StagedChecker {
  constructor(keyBlock: Uint8Array, keyId: string);
  check(view: Uint8Array, spans: Uint32Array, count: number, verdicts: Uint8Array, prevs: Float64Array): void;
}
