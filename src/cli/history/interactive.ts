import { CliError, EXIT } from "../exit.ts";
import type { ReplayStep } from "./fold.ts";
import { formatChanges, formatStep } from "./replay-format.ts";

/** The terminal, as far as stepping needs it (a test passes its own). */
export interface Terminal {
  input: NodeJS.ReadStream;
  output: NodeJS.WriteStream;
}

const KEYS: Record<string, "next" | "back" | "first" | "last" | "quit"> = {
  "\u001b[C": "next",
  "\u001b[B": "next",
  l: "next",
  j: "next",
  " ": "next",
  "\u001b[D": "back",
  "\u001b[A": "back",
  h: "back",
  k: "back",
  "\u001b[H": "first",
  "\u001b[1~": "first",
  g: "first",
  "\u001b[F": "last",
  "\u001b[4~": "last",
  G: "last",
  q: "quit",
  "\u0003": "quit", // Ctrl-C: in raw mode it arrives as a byte, not as SIGINT
  "\u0004": "quit",
};

/** The keys in one read: several may arrive at once (typed fast, or pasted). */
export function keysIn(text: string): string[] {
  const keys: string[] = [];
  for (let i = 0; i < text.length; ) {
    let end = i + 1;
    // An escape sequence: ESC [ (digits and ;) then a letter or ~, or ESC O then a letter.
    if (text[i] === "\u001b" && (text[i + 1] === "[" || text[i + 1] === "O")) {
      end = i + 2;
      while (end < text.length && /[0-9;]/.test(text[end] as string)) end++;
      end = Math.min(text.length, end + 1);
    }
    keys.push(text.slice(i, end));
    i = end;
  }
  return keys;
}

/** One screen: where we are, the steps around it, what changed and the whole context after it. */
export function screen(label: string, steps: readonly ReplayStep[], i: number): string {
  const s = steps[i] as ReplayStep;
  const lines = [
    `${label}  step ${i + 1}/${steps.length}   ←/→ step  Home/End  q quits`,
    "",
    ...steps.slice(Math.max(0, i - 4), i).map((p) => `  ${formatStep(p)}`),
    `> ${formatStep(s)}`,
    "",
    `state ${s.state} (${s.status})`,
    `changed: ${s.changes.length > 0 ? formatChanges(s.changes) : "nothing"}`,
    `effects (not run): ${s.effects.length > 0 ? s.effects.join(", ") : "none"}`,
    "",
    JSON.stringify(s.context, null, 2),
  ];
  return lines.join("\n");
}

/** Stepping needs keys in and a screen out: checked before anything is read. */
export function checkTerminal(term: Terminal): void {
  if (!term.input.isTTY || !term.output.isTTY) {
    throw new CliError(
      "--interactive needs a terminal (stdin and stdout); use --json to script it",
      EXIT.usage,
    );
  }
}

/**
 * `replay --interactive`: step forward and back with the arrow keys until q (or Ctrl-C). Raw
 * mode and the main screen are restored however it ends: a key, a signal or an exception.
 */
export async function stepThrough(
  label: string,
  steps: readonly ReplayStep[],
  term: Terminal,
): Promise<number> {
  checkTerminal(term);
  const { input, output } = term;
  let i = 0;
  const draw = () => output.write(`\u001b[H\u001b[2J${screen(label, steps, i)}\n`);
  return new Promise<number>((resolve) => {
    const restore = () => {
      input.off("data", onKey);
      process.off("SIGINT", quit);
      process.off("SIGTERM", quit);
      process.off("exit", restore);
      if (input.isRaw) input.setRawMode(false);
      input.pause();
      output.write("\u001b[?1049l"); // back to the main screen
    };
    const quit = () => {
      restore();
      resolve(i);
    };
    const onKey = (buf: Buffer) => {
      for (const k of keysIn(buf.toString("utf8"))) {
        const key = KEYS[k];
        if (key === "quit") return quit();
        if (key === "next") i = Math.min(steps.length - 1, i + 1);
        else if (key === "back") i = Math.max(0, i - 1);
        else if (key === "first") i = 0;
        else if (key === "last") i = steps.length - 1;
      }
      draw();
    };
    process.once("exit", restore);
    process.once("SIGINT", quit);
    process.once("SIGTERM", quit);
    output.write("\u001b[?1049h"); // the alternate screen: the shell's scrollback stays as it was
    input.setRawMode(true);
    input.resume();
    input.on("data", onKey);
    draw();
  });
}
