/**
 * ANSI colour, only where a human is looking: stdout is a TTY, NO_COLOR is unset or empty
 * (https://no-color.org), and TERM is not "dumb". FORCE_COLOR (non-empty, not "0"/"false") turns it
 * on for pipes, e.g. `corral events tail | less -R`; an explicit NO_COLOR still wins.
 */
export function colourEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR) return false;
  const force = env.FORCE_COLOR;
  if (force !== undefined && force !== "") return force !== "0" && force !== "false";
  return stream.isTTY === true && env.TERM !== "dumb";
}

export interface Palette {
  dim(s: string): string;
  bold(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

const wrap = (open: number, close: number) => (s: string) => `\x1b[${open}m${s}\x1b[${close}m`;

export const ansi: Palette = {
  dim: wrap(2, 22),
  bold: wrap(1, 22),
  red: wrap(31, 39),
  green: wrap(32, 39),
  yellow: wrap(33, 39),
  cyan: wrap(36, 39),
};

const same = (s: string) => s;
export const plain: Palette = { dim: same, bold: same, red: same, green: same, yellow: same, cyan: same };

export function palette(on: boolean): Palette {
  return on ? ansi : plain;
}
