import type * as Args from "./args.ts";
import type * as PoolArgs from "./pool-args.ts";

/**
 * The option parsers check values against the event catalogue and the API's request schemas,
 * which load zod (~80 ms). Commander calls parsers synchronously, so the command line is first
 * parsed with stand-ins that throw NeedParsers if a value needs checking; `run` then loads the
 * real ones and parses again. `--version` and `--help` never get there and stay fast.
 */

type Parsers = typeof Args & typeof PoolArgs;
type ParserName =
  | "parseSeq"
  | "parseCount"
  | "parseSince"
  | "parseAggregate"
  | "parseTypes"
  | "parseAcquireTimeout"
  | "parseTtl"
  | "parsePoolName"
  | "parseLeaseId";

export class NeedParsers extends Error {
  override name = "NeedParsers";
}

let loaded: Parsers | undefined;

export async function loadParsers(): Promise<void> {
  const [args, poolArgs] = await Promise.all([import("./args.ts"), import("./pool-args.ts")]);
  loaded = { ...args, ...poolArgs };
}

/** A stand-in for the parser `name`, for commander's `.option()` and `.argument()`. */
export function parser<K extends ParserName>(name: K): Parsers[K] {
  return ((text: string, previous: never) => {
    if (!loaded) throw new NeedParsers();
    // Each parser takes the option text (and, for repeatable options, the value so far).
    return (loaded[name] as (text: string, previous: never) => unknown)(text, previous);
  }) as Parsers[K];
}
