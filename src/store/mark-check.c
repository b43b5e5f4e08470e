// The byte loops of checking a batch of v3 event marks (ARCHITECTURE.md, "Event marks"), compiled
// to WebAssembly (mark-check.wasm, by scripts/build-wasm.sh); src/store/mark-ring.ts drives it and
// makes the AES calls in between. It does what src/store/mark-bytes.ts's StagedChecker does for
// the writer's layout (the mark its header block's last line) of v3 marks, byte for byte; every
// other entry it leaves to that checker (verdict FALLBACK). test/event-mark.test.ts holds both to
// checking each mark alone. No libc, no imports: plain loops over this module's own memory.

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
#define ID_CHARS 8
#define MAX_PREV_DIGITS 16

/** Socket chunks and staged messages (src/store/mark-ring.ts copies them in). */
static u8 ring[RING_BYTES];
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
/** The key id the marks must name (8 lowercase hex characters). */
static u8 key_id[ID_CHARS];
/** Character classes (mark-bytes.ts CLASS): 1 hex, 2 base64url, 4 v2 last, 8 v3 last. */
static u8 class_of[256];
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char NAME[] = "Corral-Mark:";
#define NAME_LEN 12

static u32 laid;
static u32 used;

#define EXPORT(name) __attribute__((export_name(#name)))

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

/** Δ_{i+1} = 2·Δ_i in GF(2^128), big-endian, from Δ_0 = L in masks[0, 16); and the character classes. */
EXPORT(init_masks) void init_masks(void) {
  init_classes();
  for (u32 i = 1; i <= MAX_BLOCKS; i++) {
    const u8 *x = masks + 16 * (i - 1);
    u8 *y = masks + 16 * i;
    u32 carry = 0;
    for (int j = 15; j >= 0; j--) {
      y[j] = (u8)((x[j] << 1) | carry);
      carry = x[j] >> 7;
    }
    if (carry) y[15] ^= 0x87;
  }
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
 * where a v3 mark's value starts, or -1 (a v2 mark's is left to the JavaScript checker).
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

/** mark-bytes.ts parseMarkBytes for a v3 mark: its prev, or -1. */
static double parse_v3(const u8 *data, int from, int to) {
  if (data[from] != 'v' || data[from + 1] != '3' || data[from + 2] != '.') return -1;
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

/**
 * Entries [from, count): writes the verdict of each that is not a v3 mark in the writer's layout
 * (FALLBACK for the JavaScript checker), and lays out each v3 one's MAC input, padded and masked,
 * in `input`. Stops before an entry whose input would take it past `cap` bytes (but lays out at
 * least one); returns the index to go on from.
 * `laid_count()` and `input_used()` say what was laid out.
 */
EXPORT(layout) u32 layout(u32 from, u32 count, u32 cap) {
  if (cap > INPUT_BYTES) cap = INPUT_BYTES;
  laid = 0;
  used = 0;
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
    double prev = value < 0 ? -1 : parse_v3(block, value, to);
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
    u32 body_len = size - hdr;
    u32 need = 2 + subject_len + 12 + body_len + 16;
    if (used + need > cap && laid > 0) break; // need <= INPUT_BYTES: entries are at most MAX_ENTRY
    prevs[i] = prev;
    starts[laid] = used;
    entries[laid] = i;
    tag_at[laid] = data + (u32)(to - V3_MAC);
    u8 *p = input + used;
    p = put_be(p, subject_len, 2);
    __builtin_memcpy(p, subject_bytes, subject_len);
    p += subject_len;
    p = put_be(p, (u64)prev, 8);
    p = put_be(p, body_len, 4);
    __builtin_memcpy(p, block + hdr, body_len);
    p += body_len;
    u32 end = (u32)(p - input);
    u32 padded = (end + 16) & ~15u;
    input[end] = 0x80;
    for (u32 k = end + 1; k < padded; k++) input[k] = 0;
    // Each block masked with its position's Δ (Δ_1 for the first).
    v128_t *w = (v128_t *)(input + used);
    const v128_t *m = (const v128_t *)(masks + 16);
    for (u32 k = 0, blocks = (padded - used) / 16; k < blocks; k++)
      wasm_v128_store(w + k, wasm_v128_xor(wasm_v128_load(w + k), wasm_v128_load(m + k)));
    used = padded;
    verdicts[i] = MISMATCH; // until its tag says otherwise
    laid++;
  }
  starts[laid] = used;
  return i;
}

/** Σ of each laid-out entry: the XOR of its blocks in `out` (E1 of its input). */
EXPORT(sum) void sum(void) {
  for (u32 k = 0; k < laid; k++) {
    const v128_t *w = (const v128_t *)(out + starts[k]);
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
