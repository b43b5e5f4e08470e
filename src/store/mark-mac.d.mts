// Types of mark-mac.mjs (plain JavaScript, shared with the mark worker).
export declare const TAG_BYTES: 16;
export declare class MarkMac {
  constructor(key: Uint8Array);
  static pad(input: Uint8Array, end: number): number;
  tags(input: Uint8Array, starts: Uint32Array, count: number): Uint8Array;
}
