import { createServer } from "node:net";

/** Resolves true when nothing on this machine holds the port. */
export type PortProbe = (port: number) => Promise<boolean>;

/**
 * Hosts probed, one after another (binding them at once would collide with ourselves).
 * 0.0.0.0 is what `docker -p` binds; 127.0.0.1 catches a loopback-only holder on systems where
 * the wildcard bind would still succeed (macOS); `::` (dual-stack) catches a holder on `::1`,
 * which is where Node ≥17 puts a server told to listen on "localhost" and which neither IPv4
 * bind notices.
 */
const HOSTS = ["0.0.0.0", "127.0.0.1", "::"] as const;

/** Held by someone else (or a privileged port we may not bind). */
const HELD = new Set(["EADDRINUSE", "EACCES"]);
/** IPv6 missing or disabled on this machine: nothing can hold the port there. */
const NO_IPV6 = new Set(["EADDRNOTAVAIL", "EAFNOSUPPORT", "EPROTONOSUPPORT"]);

/**
 * The default probe: bind a TCP server on each host with `exclusive: true`, then close it.
 * Other errors (EMFILE, …) are thrown rather than read as "held": treating them as held would
 * make a healthy range look exhausted.
 */
export const bindProbe: PortProbe = async (port) => {
  for (const host of HOSTS) {
    if (!(await bindOnce(port, host))) return false;
  }
  return true;
};

function bindOnce(port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? "";
      if (HELD.has(code)) resolve(false);
      else if (host === "::" && NO_IPV6.has(code)) resolve(true);
      else reject(err);
    });
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
