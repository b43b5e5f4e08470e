// What the suite cannot run without, checked once before any test: the first thing missing is
// named in one line, instead of a cascade of failed and cancelled tests. nats-server is installed
// here the way `npm start` does it (src/nats/install.ts; CORRAL_NO_INSTALL=1 turns that off).
// Docker is not checked: without an engine the Docker tests skip and say so.

/** Resolves to undefined when the suite can run, else one line saying what is missing. */
export async function preflight() {
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < 20 || (major === 20 && minor < 19)) {
    return `Node ${process.versions.node} is too old: corral needs 20.19 or newer`;
  }
  let tsImport;
  try {
    ({ tsImport } = await import("tsx/esm/api"));
  } catch {
    return "node_modules is missing or incomplete: run `npm ci` first";
  }
  const { obtainNatsServer } = await tsImport("../src/nats/install.ts", import.meta.url);
  const nats = await obtainNatsServer();
  if ("missing" in nats) return `${nats.missing.split("\n")[0]}; install it: ${nats.commands[0]}`;
  return undefined;
}
