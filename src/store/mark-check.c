// The byte loops of event marks (ARCHITECTURE.md, "Event marks"), compiled to WebAssembly
// (mark-check.wasm, by scripts/build-wasm.sh). src/store/mark-ring.ts drives a batch's check and
// makes the AES calls in between: for v4 and v3 marks in the writer's layout (the mark its header
// block's last line) it does what src/store/mark-bytes.ts's StagedChecker does, byte for byte, and
// leaves every other entry to that checker (verdict FALLBACK). src/store/mark-hash.ts uses `hash_staged`
// to lay out the v4 MAC inputs of a writer's burst. test/event-mark.test.ts holds all of it to
// checking each mark alone and to a reference written from the design. No libc, no imports: plain
// loops over this module's own memory.

#include <wasm_simd128.h>

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;

enum { VALID = 0, MISSING = 1, MALFORMED = 2, OTHER_KEY = 3, MISMATCH = 4, FALLBACK = 5 };

#define RING_BYTES (4u << 20)
#define MAX_ENTRIES 4096
/** The largest entry (subject, header block and body) checked here; a larger one falls back. */
#define MAX_ENTRY (256u << 10)
#define MAX_BLOCKS (MAX_ENTRY / 16 + 2)
#define INPUT_BYTES (512u << 10)
#define V3_MAC 22
/** A v4 hash chunk: 1 KiB of MAC input, 256 words of each pass's key. */
#define NH_CHUNK 1024u
#define NH_WORDS (NH_CHUNK / 4)
#define NH_PASSES 4
#define ID_CHARS 8
#define MAX_PREV_DIGITS 16

/** Socket chunks and staged messages (src/store/mark-ring.ts copies them in): grown by `init_ring`. */
static u8 *ring;
/** Per entry: subject's address and length, header block's address, header length, total length. */
static u32 spans[5 * MAX_ENTRIES];
static u8 verdicts[MAX_ENTRIES];
static double prevs[MAX_ENTRIES];
/** Per v3 entry laid out: where its input starts (one more: the end), its entry, its tag's address. */
static u32 starts[MAX_ENTRIES + 1];
static u32 entries[MAX_ENTRIES];
static u32 tag_at[MAX_ENTRIES];
static u8 input[INPUT_BYTES + 64] __attribute__((aligned(16)));
/** E1 of `input`, copied in by the caller. */
static u8 out[INPUT_BYTES + 64] __attribute__((aligned(16)));
static u8 sums[16 * MAX_ENTRIES] __attribute__((aligned(16)));
/** E2 of `sums`, copied in by the caller. */
static u8 tags[16 * MAX_ENTRIES];
/** Δ_1 … Δ_MAX_BLOCKS; Δ_0 = L is written by the caller, then `init_masks` makes the rest. */
static u8 masks[16 * (MAX_BLOCKS + 1)] __attribute__((aligned(16)));
/** v4's L (Δ_0), written by the caller; a hash doubles it as it goes, so an entry of any size has its masks. */
static u8 offset4[16] __attribute__((aligned(16)));
/** A v4 hash's key: NH_PASSES passes of NH_WORDS words, written by the caller. */
static u32 nh_key[NH_PASSES * NH_WORDS] __attribute__((aligned(16)));
/** The key id the marks must name (8 lowercase hex characters). */
static u8 key_id[ID_CHARS];
/** Character classes (mark-bytes.ts CLASS): 1 hex, 2 base64url, 4 v2 last, 8 v3 last. */
static u8 class_of[256];
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char NAME[] = "Corral-Mark:";
#define NAME_LEN 12

static u32 laid;
static u32 used;
/** The version of the marks the last `layout` laid out (3 or 4): one version a call. */
static u32 version;

#define EXPORT(name) __attribute__((export_name(#name)))

/**
 * Grows the memory by the ring and a page after it (only a ring's instance has one: mark-hash.ts's
 * needs none). The page is never written: a hash reads up to 31 bytes past a message (`nh_piece`).
 */
EXPORT(init_ring) u8 *init_ring(void) {
  if (!ring) {
    int pages = __builtin_wasm_memory_grow(0, RING_BYTES / 65536 + 1);
    if (pages >= 0) ring = (u8 *)((unsigned long)pages * 65536);
  }
  return ring;
}
EXPORT(ring_ptr) u8 *ring_ptr(void) { return ring; }
EXPORT(ring_size) u32 ring_size(void) { return RING_BYTES; }
EXPORT(spans_ptr) u32 *spans_ptr(void) { return spans; }
EXPORT(verdicts_ptr) u8 *verdicts_ptr(void) { return verdicts; }
EXPORT(prevs_ptr) double *prevs_ptr(void) { return prevs; }
EXPORT(input_ptr) u8 *input_ptr(void) { return input; }
EXPORT(out_ptr) u8 *out_ptr(void) { return out; }
EXPORT(sums_ptr) u8 *sums_ptr(void) { return sums; }
EXPORT(tags_ptr) u8 *tags_ptr(void) { return tags; }
EXPORT(masks_ptr) u8 *masks_ptr(void) { return masks; }
EXPORT(offset4_ptr) u8 *offset4_ptr(void) { return offset4; }
EXPORT(nh_key_ptr) u32 *nh_key_ptr(void) { return nh_key; }
EXPORT(laid_version) u32 laid_version(void) { return version; }
EXPORT(key_id_ptr) u8 *key_id_ptr(void) { return key_id; }
EXPORT(max_entries) u32 max_entries(void) { return MAX_ENTRIES; }
EXPORT(laid_count) u32 laid_count(void) { return laid; }
EXPORT(input_used) u32 input_used(void) { return used; }

static void init_classes(void) {
  for (const char *c = "0123456789abcdef"; *c; c++) class_of[(u8)*c] |= 1;
  for (const char *c = B64; *c; c++) class_of[(u8)*c] |= 2;
  for (const char *c = "AEIMQUYcgkosw048"; *c; c++) class_of[(u8)*c] |= 4;
  for (const char *c = "AQgw"; *c; c++) class_of[(u8)*c] |= 8;
}

/** Δ_{i+1} = 2·Δ_i in GF(2^128), big-endian, for i < n, from Δ_0 = L in m[0, 16). */
static void doublings(u8 *m, u32 n) {
  for (u32 i = 1; i <= n; i++) {
    const u8 *x = m + 16 * (i - 1);
    u8 *y = m + 16 * i;
    u32 carry = 0;
    for (int j = 15; j >= 0; j--) {
      y[j] = (u8)((x[j] << 1) | carry);
      carry = x[j] >> 7;
    }
    if (carry) y[15] ^= 0x87;
  }
}

/** The masks of v3 from its Δ_0 (L, in masks[0, 16)); and the character classes. */
EXPORT(init_masks) void init_masks(void) {
  init_classes();
  doublings(masks, MAX_BLOCKS);
}

/**
 * A v4 hash under way (mark-hash.ts says what it is): NH_PASSES sums of NH over the current chunk,
 * how many of its words are in, and where its blocks go.
 */
typedef struct {
  v128_t acc[NH_PASSES];
  u32 words;
  u8 *out;
  /** Blocks written so far; each chunk's two are masked with their place's Δ, the last one's here. */
  u32 blocks;
  v128_t delta;
} Nh;

/** Inlined, as is all of a hash, so that its sums stay in registers rather than in memory. */
#define INLINE static inline __attribute__((always_inline))

INLINE void nh_start(Nh *h, u8 *out) {
  for (int q = 0; q < NH_PASSES; q++) h->acc[q] = wasm_i64x2_const(0, 0);
  h->words = 0;
  h->out = out;
  h->blocks = 0;
  h->delta = wasm_v128_load(offset4);
}

/**
 * 2·Δ in GF(2^128) on Δ's bytes, big-endian (as `doublings`), without a branch on the key: each
 * byte shifted left takes the next one's top bit, and byte 0's top bit folds 0x87 into byte 15.
 */
INLINE v128_t twice(v128_t d) {
  v128_t top = wasm_u8x16_shr(d, 7);
  v128_t zero = wasm_i64x2_const(0, 0);
  v128_t next = wasm_i8x16_shuffle(top, zero, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
  v128_t wrap = wasm_i8x16_shuffle(top, zero, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0);
  v128_t fold = wasm_v128_and(wasm_i8x16_neg(wrap), wasm_i8x16_const(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (char)0x87));
  return wasm_v128_xor(wasm_v128_or(wasm_i8x16_shl(d, 1), next), fold);
}

/** A chunk's two blocks: its four sums, 64-bit little-endian, (1, 2) then (3, 4). */
INLINE void nh_emit(Nh *h) {
  u64 s[NH_PASSES];
  for (int q = 0; q < NH_PASSES; q++)
    s[q] = wasm_i64x2_extract_lane(h->acc[q], 0) + wasm_i64x2_extract_lane(h->acc[q], 1);
  for (int b = 0; b < 2; b++) {
    v128_t block = wasm_i64x2_make((long long)s[2 * b], (long long)s[2 * b + 1]);
    h->delta = twice(h->delta);
    block = wasm_v128_xor(block, h->delta);
    wasm_v128_store(h->out, block);
    h->out += 16;
    h->blocks++;
  }
  for (int q = 0; q < NH_PASSES; q++) h->acc[q] = wasm_i64x2_const(0, 0);
  h->words = 0;
}

/** Feeds one 32-byte block, as its two halves. */
INLINE void nh_block(Nh *h, v128_t a, v128_t b) {
  for (int q = 0; q < NH_PASSES; q++) {
    const u32 *k = nh_key + NH_WORDS * q + h->words;
    v128_t x = wasm_i32x4_add(a, wasm_v128_load(k));
    v128_t y = wasm_i32x4_add(b, wasm_v128_load(k + 4));
    h->acc[q] = wasm_i64x2_add(h->acc[q], wasm_u64x2_extmul_low_u32x4(x, y));
    h->acc[q] = wasm_i64x2_add(h->acc[q], wasm_u64x2_extmul_high_u32x4(x, y));
  }
  h->words += 8;
  if (h->words == NH_WORDS) nh_emit(h);
}

/** Feeds `n` bytes (a whole number of 32-byte blocks) of a chunk-aligned stream. */
INLINE void nh_blocks(Nh *h, const u8 *p, u32 n) {
  for (u32 i = 0; i < n; i += 32) nh_block(h, wasm_v128_load(p + i), wasm_v128_load(p + i + 16));
}

/** 32 bytes of 0xff, then 32 of zeros: `keep + 32 - r` masks all but the first r bytes of 32. */
static const u8 keep[64] __attribute__((aligned(16))) = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255};

/**
 * Feeds `n` bytes, then zeros to a whole 32-byte block. The last block is read whole and its bytes
 * past `n` masked off: whatever follows a piece in this memory is readable (the ring has room after
 * it; see `init_ring`), and never copied.
 */
INLINE void nh_piece(Nh *h, const u8 *p, u32 n) {
  u32 whole = n & ~31u;
  nh_blocks(h, p, whole);
  u32 r = n - whole;
  if (r == 0) return;
  const u8 *m = keep + 32 - r;
  nh_block(h, wasm_v128_and(wasm_v128_load(p + whole), wasm_v128_load(m)),
           wasm_v128_and(wasm_v128_load(p + whole + 16), wasm_v128_load(m + 16)));
}

/** Ends the stream: the last chunk's blocks, unless it is empty. Returns the blocks written. */
INLINE u32 nh_end(Nh *h) {
  if (h->words > 0) nh_emit(h);
  return h->blocks;
}

/**
 * A writer's staging area (mark-hash.ts): `n` bytes, and 64 more that may be read, never written (a
 * hash reads up to 31 bytes past a piece). Grown at the end of the memory as needed; its address
 * (0: the memory could not grow).
 */
static u8 *stage;
static u32 stage_bytes;
EXPORT(stage_ptr) u8 *stage_ptr(u32 n) {
  if (n > 0xffffffffu - 64 - 65535) return 0;
  if (n + 64 > stage_bytes) {
    u32 want = n + 64;
    if (stage_bytes < (1u << 30) && 2 * stage_bytes > want) want = 2 * stage_bytes;
    int pages = __builtin_wasm_memory_grow(0, (want + 65535) / 65536);
    if (pages < 0) return 0;
    stage = (u8 *)((unsigned long)pages * 65536);
    stage_bytes = (want + 65535) / 65536 * 65536;
  }
  return stage;
}

/** The byte at an address of this module's memory (spans hold addresses, not offsets). */
static const u8 *addr(u32 a) { return (const u8 *)(unsigned long)a; }

/** Whether `n` bytes are all ASCII, eight at a time. */
static int ascii(const u8 *p, u32 n) {
  u64 wide = 0;
  u32 i = 0;
  for (; i + 8 <= n; i += 8) {
    u64 w;
    __builtin_memcpy(&w, p + i, 8);
    wide |= w;
  }
  for (; i < n; i++) wide |= p[i];
  return (wide & 0x8080808080808080ull) == 0;
}

static int is_digit(u8 c) { return c >= '0' && c <= '9'; }

/**
 * mark-bytes.ts lastLineMark over a header block at `data` (begin 0) whose last line ends at `to`:
 * where a v3 or v4 mark's value starts, or -1 (a v2 mark's is left to the JavaScript checker).
 */
static int last_line_mark(const u8 *data, int to) {
  const int begin = 0;
  if (data[to] != 13 || data[to + 1] != 10) return -1;
  if (to - V3_MAC - 1 <= begin) return -1;
  int at = to - V3_MAC - 1;
  if (data[at] != '.') return -1; // a v2 MAC's place: the JavaScript checker's
  int digits = 0;
  while (digits <= MAX_PREV_DIGITS && at - 1 > begin && is_digit(data[at - 1])) {
    at--;
    digits++;
  }
  int from = at - 1 - ID_CHARS - 3;
  int name = from - 1 - NAME_LEN;
  if (name - 1 < begin || data[from - 1] != ' ' || data[name - 1] != '\n') return -1;
  u64 a, b;
  u32 c, d;
  __builtin_memcpy(&a, data + name, 8);
  __builtin_memcpy(&b, NAME, 8);
  __builtin_memcpy(&c, data + name + 8, 4);
  __builtin_memcpy(&d, NAME + 8, 4);
  return a == b && c == d ? from : -1;
}

/** mark-bytes.ts parseMarkBytes for a v3 or v4 mark (the same shape): its prev, or -1. */
static double parse_v34(const u8 *data, int from, int to) {
  if (data[from] != 'v' || (data[from + 1] != '3' && data[from + 1] != '4') || data[from + 2] != '.') return -1;
  if (to - from < 3 + ID_CHARS + 3 + V3_MAC) return -1;
  int at = from + 3;
  for (int end = at + ID_CHARS; at < end; at++)
    if (!(class_of[data[at]] & 1)) return -1;
  if (data[at++] != '.') return -1;
  int digits_at = at;
  double prev = 0;
  while (at < to && is_digit(data[at])) prev = prev * 10 + (data[at++] - '0');
  int digits = at - digits_at;
  if (digits == 0 || digits > MAX_PREV_DIGITS || (digits > 1 && data[digits_at] == '0')) return -1;
  if (data[at++] != '.' || to - at != V3_MAC) return -1;
  for (; at < to - 1; at++)
    if (!(class_of[data[at]] & 2)) return -1;
  return (class_of[data[at]] & 8) ? prev : -1;
}

static u8 *put_be(u8 *p, u64 v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--) p[i] = (u8)(v >> (8 * (bytes - 1 - i)));
  return p + bytes;
}

/** A v3 entry's MAC input, padded and masked, at `p`; returns its end. */
static u8 *layout_v3(u8 *p, const u8 *subject, u32 subject_len, double prev, const u8 *body, u32 body_len) {
  u8 *start = p;
  p = put_be(p, subject_len, 2);
  __builtin_memcpy(p, subject, subject_len);
  p += subject_len;
  p = put_be(p, (u64)prev, 8);
  p = put_be(p, body_len, 4);
  __builtin_memcpy(p, body, body_len);
  p += body_len;
  u32 end = (u32)(p - start);
  u32 padded = (end + 16) & ~15u;
  start[end] = 0x80;
  for (u32 k = end + 1; k < padded; k++) start[k] = 0;
  // Each block masked with its position's Δ (Δ_1 for the first).
  v128_t *w = (v128_t *)start;
  const v128_t *m = (const v128_t *)(masks + 16);
  for (u32 k = 0, blocks = padded / 16; k < blocks; k++)
    wasm_v128_store(w + k, wasm_v128_xor(wasm_v128_load(w + k), wasm_v128_load(m + k)));
  return start + padded;
}

/**
 * A v4 entry's MAC input (its hash's blocks, masked) at `p`, hashed where its subject and body
 * lie: the first block (u16 |subject|, u64 prev, u32 |body|, zeros), then subject and body, each
 * padded with zeros to 32 bytes. Returns its end.
 */
static u8 *layout_v4(u8 *p, const u8 *subject, u32 subject_len, double prev, const u8 *body, u32 body_len) {
  u8 first[32] __attribute__((aligned(16)));
  wasm_v128_store(first, wasm_i64x2_const(0, 0));
  wasm_v128_store(first + 16, wasm_i64x2_const(0, 0));
  put_be(put_be(put_be(first, subject_len, 2), (u64)prev, 8), body_len, 4);
  Nh h;
  nh_start(&h, p);
  nh_blocks(&h, first, 32);
  nh_piece(&h, subject, subject_len);
  nh_piece(&h, body, body_len);
  return p + 16 * nh_end(&h);
}

/**
 * The v4 MAC inputs (masked) of `count` entries a writer staged (mark-hash.ts), laid out from `dst`:
 * entry k's subject and body at the addresses and lengths spans[5k … 5k+3], its prev prevs[k]
 * (a safe non-negative integer). `starts` says where each begins; returns the bytes laid out.
 */
EXPORT(hash_staged) u32 hash_staged(u32 count, u8 *dst) {
  if (count > MAX_ENTRIES) return 0;
  u8 *p = dst;
  for (u32 k = 0; k < count; k++) {
    const u32 *s = spans + 5 * k;
    starts[k] = (u32)(p - dst);
    p = layout_v4(p, addr(s[0]), s[1], prevs[k], addr(s[2]), s[3]);
  }
  starts[count] = (u32)(p - dst);
  laid = count;
  return (u32)(p - dst);
}

/** A writer's mark, at most: `v4.`, the key id, `.`, prev's digits, `.`, the tag. */
#define MARK_TEXT 64

/**
 * The mark of each entry `hash_staged` laid out, its tag in `tags`: `v4.<key id>.<prev>.<tag in
 * base64url>` at out[MARK_TEXT · k] (a writer's instance has no other use for `out`), its length
 * at verdicts[k].
 */
EXPORT(mark_texts) void mark_texts(void) {
  for (u32 k = 0; k < laid; k++) {
    u8 *p = out + MARK_TEXT * k;
    *p++ = 'v';
    *p++ = '4';
    *p++ = '.';
    for (int i = 0; i < ID_CHARS; i++) *p++ = key_id[i];
    *p++ = '.';
    u8 digits[20];
    int n = 0;
    u64 prev = (u64)prevs[k];
    do {
      digits[n++] = (u8)('0' + prev % 10);
      prev /= 10;
    } while (prev > 0);
    while (n > 0) *p++ = digits[--n];
    *p++ = '.';
    const u8 *t = tags + 16 * k;
    for (int i = 0; i < 15; i += 3) {
      u32 v = ((u32)t[i] << 16) | ((u32)t[i + 1] << 8) | t[i + 2];
      *p++ = (u8)B64[v >> 18];
      *p++ = (u8)B64[(v >> 12) & 63];
      *p++ = (u8)B64[(v >> 6) & 63];
      *p++ = (u8)B64[v & 63];
    }
    *p++ = (u8)B64[t[15] >> 2];
    *p++ = (u8)B64[(t[15] & 3) << 4];
    verdicts[k] = (u8)(p - (out + MARK_TEXT * k));
  }
}

/** MAC input bytes an entry lays out, at most. */
static u32 need_of(u32 v, u32 subject_len, u32 body_len) {
  if (v == 3) return 2 + subject_len + 12 + body_len + 16;
  u32 stream = 32 + ((subject_len + 31) & ~31u) + ((body_len + 31) & ~31u);
  return 32 * ((stream + NH_CHUNK - 1) / NH_CHUNK);
}

/**
 * Entries [from, count): writes the verdict of each that is not a v3 or v4 mark in the writer's
 * layout (FALLBACK for the JavaScript checker), and lays out each one's MAC input in `input`, all
 * of one version (`laid_version()`: the first one's). Stops before an entry of the other version,
 * or whose input would take it past `cap` bytes (but lays out at least one); returns the index to
 * go on from. `laid_count()` and `input_used()` say what was laid out.
 */
EXPORT(layout) u32 layout(u32 from, u32 count, u32 cap) {
  if (cap > INPUT_BYTES) cap = INPUT_BYTES;
  laid = 0;
  used = 0;
  version = 0;
  u32 i = from;
  for (; i < count; i++) {
    const u32 *s = spans + 5 * i;
    u32 subject = s[0], subject_len = s[1], data = s[2], hdr = s[3], size = s[4];
    if (subject_len > 0xffff || subject_len + size > MAX_ENTRY || hdr < 4 || hdr > size) {
      verdicts[i] = FALLBACK;
      continue;
    }
    const u8 *block = addr(data);
    int to = (int)hdr - 4;
    int value = last_line_mark(block, to);
    double prev = value < 0 ? -1 : parse_v34(block, value, to);
    if (prev < 0) {
      verdicts[i] = FALLBACK;
      continue;
    }
    const u8 *subject_bytes = addr(subject);
    if (!ascii(subject_bytes, subject_len)) {
      verdicts[i] = FALLBACK; // not a subject corral writes: the JavaScript checker says why
      continue;
    }
    int same = 1;
    for (int j = 0; j < ID_CHARS; j++) same &= block[value + 3 + j] == key_id[j];
    if (!same) {
      verdicts[i] = OTHER_KEY;
      continue;
    }
    u32 v = block[value + 1] - '0';
    if (version == 0) version = v;
    if (v != version) break;
    u32 body_len = size - hdr;
    u32 need = need_of(v, subject_len, body_len);
    if (used + need > cap && laid > 0) break; // need <= INPUT_BYTES: entries are at most MAX_ENTRY
    prevs[i] = prev;
    starts[laid] = used;
    entries[laid] = i;
    tag_at[laid] = data + (u32)(to - V3_MAC);
    u8 *p = input + used;
    u8 *end = v == 3 ? layout_v3(p, subject_bytes, subject_len, prev, block + hdr, body_len)
                     : layout_v4(p, subject_bytes, subject_len, prev, block + hdr, body_len);
    used = (u32)(end - input);
    verdicts[i] = MISMATCH; // until its tag says otherwise
    laid++;
  }
  starts[laid] = used;
  return i;
}

/** Σ of each laid-out entry: the XOR of its blocks in E1 of its input, copied in at `e1` (`out`, for `layout`'s). */
EXPORT(sum) void sum(u8 *e1) {
  for (u32 k = 0; k < laid; k++) {
    const v128_t *w = (const v128_t *)(e1 + starts[k]);
    v128_t a = wasm_i64x2_const(0, 0);
    for (u32 j = 0, blocks = (starts[k + 1] - starts[k]) / 16; j < blocks; j++) a = wasm_v128_xor(a, wasm_v128_load(w + j));
    wasm_v128_store(sums + 16 * k, a);
  }
}

/** Each laid-out entry's verdict: its tag (in `tags`, E2 of Σ) in base64url against its mark's, in constant time. */
EXPORT(compare) void compare(void) {
  for (u32 k = 0; k < laid; k++) {
    const u8 *t = tags + 16 * k;
    const u8 *mark = addr(tag_at[k]);
    u32 diff = 0;
    int o = 0;
    for (int i = 0; i < 15; i += 3) {
      u32 n = ((u32)t[i] << 16) | ((u32)t[i + 1] << 8) | t[i + 2];
      diff |= mark[o++] ^ (u8)B64[n >> 18];
      diff |= mark[o++] ^ (u8)B64[(n >> 12) & 63];
      diff |= mark[o++] ^ (u8)B64[(n >> 6) & 63];
      diff |= mark[o++] ^ (u8)B64[n & 63];
    }
    diff |= mark[o++] ^ (u8)B64[t[15] >> 2];
    diff |= mark[o] ^ (u8)B64[(t[15] & 3) << 4];
    verdicts[entries[k]] = diff == 0 ? VALID : MISMATCH;
  }
}
