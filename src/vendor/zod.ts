// zod as corral loads it. Every value import of zod goes through this file
// (test/vendor-imports.test.ts): the build replaces its compiled copy with one bundled file
// without zod's ~50 translations of its messages (scripts/build.js). zod re-exports those from
// every entry point, and loading them took 35-45 ms of every command's start. Types may still come
// from "zod" itself.
export { z } from "zod";
