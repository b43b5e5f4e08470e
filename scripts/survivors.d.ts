// Types of survivors.js, for the TypeScript that imports it (test/helpers/teardown.ts).

export interface MarkedProcess {
  pid: number;
  argv: string[];
}

export function markedProcesses(mark: { env?: string; tmpRoot: string }): MarkedProcess[];
export function kill(pid: number): boolean;
export function settled<T>(find: () => T[]): Promise<T[]>;
export function shareTsxCache(fromDir: string, toDir: string): void;
