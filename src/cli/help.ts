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
      const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`));
      return [pathOf(cmd, program), ...args].join(" ");
    },
  });
  // Commander suggests a near name for an unknown command from that same list, by last word:
  // `corral tail` got "(Did you mean tail?)". The suggestion names the whole command instead.
  const unknownCommand = (program as unknown as Unknown).unknownCommand;
  (program as unknown as Unknown).unknownCommand = function (this: Command) {
    const error = this.error.bind(this);
    const byName = new Map(leaves(program).map((c) => [c.name(), pathOf(c, program)]));
    this.error = (message, opts) =>
      error(
        message.replace(
          /\(Did you mean (\S+)\?\)/,
          (_, name: string) => `(Did you mean ${byName.get(name) ?? name}?)`,
        ),
        opts,
      );
    unknownCommand.call(this);
  };
}

interface Unknown {
  unknownCommand(this: Command): void;
}

/** `events tail` for tail's command: its name under the program's. */
function pathOf(cmd: Command, program: Command): string {
  const path: string[] = [];
  for (let c: Command | null = cmd; c && c !== program; c = c.parent) path.unshift(c.name());
  return path.join(" ");
}
