import { type Command, Help } from "commander";

/**
 * `corral --help` lists every command, nested ones (`events tail`, `pool close`) included, one
 * line each: its name and arguments, and its summary (a short form of its description). Set
 * before the commands are added: they inherit it, so `corral events --help` names them alike.
 */
export function listEveryCommand(program: Command): void {
  const base = new Help();
  const leaves = (cmd: Command): Command[] => (cmd.commands.length ? cmd.commands.flatMap(leaves) : [cmd]);
  program.configureHelp({
    visibleCommands: (cmd) => {
      const shown = base.visibleCommands(cmd);
      return cmd === program ? shown.flatMap(leaves) : shown;
    },
    subcommandTerm: (cmd) => {
      const path: string[] = [];
      for (let c: Command | null = cmd; c && c !== program; c = c.parent) path.unshift(c.name());
      const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`));
      return [...path, ...args].join(" ");
    },
  });
}
