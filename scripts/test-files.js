// Runs test files through node:test's `run()`, in the order given: `node --test` sorts them, and
// scripts/test.js puts the longest first. Started by scripts/test.js with `--import tsx` (which
// the files' processes inherit). Takes the runner's own flags, then the files:
//   --test-name-pattern=<re> (repeatable), --test-timeout=<ms>, --test-concurrency=<n>,
//   --test-only, --test-reporter=tap|spec|dot
import { run } from "node:test";
import { dot, spec, tap } from "node:test/reporters";

const reporters = { tap, spec, dot };

const files = [];
const testNamePatterns = [];
const options = { concurrency: 2, timeout: undefined, only: false };
let reporter = "tap";
for (const arg of process.argv.slice(2)) {
  if (!arg.startsWith("--")) {
    files.push(arg);
    continue;
  }
  const eq = arg.indexOf("=");
  const flag = eq < 0 ? arg : arg.slice(0, eq);
  const value = eq < 0 ? "" : arg.slice(eq + 1);
  if (flag === "--test-name-pattern") testNamePatterns.push(value);
  else if (flag === "--test-timeout") options.timeout = Number(value);
  else if (flag === "--test-concurrency") options.concurrency = Number(value);
  else if (flag === "--test-only") options.only = true;
  else if (flag === "--test-reporter" && Object.hasOwn(reporters, value)) reporter = value;
  else {
    console.error(`npm test: ${arg} is not a flag the runner takes (see scripts/test-files.js)`);
    process.exit(2);
  }
}
for (const n of [options.timeout, options.concurrency]) {
  if (n !== undefined && !(Number.isInteger(n) && n > 0)) {
    console.error("npm test: --test-timeout and --test-concurrency take a positive whole number");
    process.exit(2);
  }
}

const stream = run({ files, ...options, ...(testNamePatterns.length > 0 ? { testNamePatterns } : {}) });
stream.on("test:fail", (event) => {
  if (!event.todo && !event.skip) process.exitCode = 1;
});
stream.compose(reporters[reporter]).pipe(process.stdout);
