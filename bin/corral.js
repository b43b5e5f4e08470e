#!/usr/bin/env node
// corral's command line. The sources are TypeScript run through tsx (there is no build step).
import { register } from "tsx/esm/api";

register();
const { run } = await import("../src/cli/main.ts");
process.exitCode = await run(process.argv);
// The command is done and has closed what it opened, but a connection attempt to a black-holed
// address can linger in the socket layer for a while: exit once stdout has drained, not later.
process.stdout.write("", () => process.exit());
