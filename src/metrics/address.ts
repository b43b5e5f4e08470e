import { isIP } from "node:net";

/** Where `/metrics` listens: a host (IPv4, IPv6 or a name) and a port (0: any free one). */
export interface MetricsAddress {
  host: string;
  port: number;
}

export class MetricsAddressError extends Error {
  override name = "MetricsAddressError";
}

/**
 * `--metrics` / `metrics:` in corral.yaml: `host:port`, `[v6]:port`, or `:port` / a bare port
 * (loopback only: an exporter open to the network should be asked for by name, e.g. 0.0.0.0:9464).
 */
export function parseMetricsAddress(text: string): MetricsAddress {
  const s = text.trim();
  const bad = (why: string) =>
    new MetricsAddressError(
      `metrics address ${JSON.stringify(text)}: ${why} (use host:port, e.g. 127.0.0.1:9464)`,
    );
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (v6) {
    [, host = "", port = ""] = v6;
    if (isIP(host) !== 6) throw bad(`${host} is not an IPv6 address`);
  } else if (/^\d+$/.test(s)) {
    host = "127.0.0.1";
    port = s;
  } else {
    const colon = s.lastIndexOf(":");
    if (colon < 0) throw bad("no port");
    host = s.slice(0, colon) || "127.0.0.1";
    port = s.slice(colon + 1);
    if (host.includes(":")) throw bad("an IPv6 host goes in brackets: [::1]:9464");
    if (!/^[A-Za-z0-9.-]{1,253}$/.test(host))
      throw bad(`${JSON.stringify(host)} is not a host name or address`);
  }
  const n = /^\d{1,5}$/.test(port) ? Number(port) : Number.NaN;
  if (!(n >= 0 && n <= 65535)) throw bad(`port ${JSON.stringify(port)} is not 0-65535`);
  return { host, port: n };
}
