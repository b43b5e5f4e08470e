// zod as corral loads it. Every value import of zod goes through this file
// (test/vendor.test.ts): the build replaces its compiled copy with one bundled file without
// zod's ~50 translations of its messages (scripts/build.js). zod re-exports those from every
// entry point, and loading them took 35-45 ms of every command's start. Types may still come
// from "zod" itself.
//
// Checks are compiled (zod/compile: each schema made into plain code on its first parse, the
// runtime parser kept for any the compiler declines): an event's validation took half the time,
// ~0.3-0.6 µs instead of ~0.8-1.3, warm or in a fresh process; a worldview rebuild ran ~10%
// faster. Imported first, so that it applies to every schema (it hooks those made after it runs).
import "zod/compile";

export { z } from "zod";
