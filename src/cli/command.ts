/**
 * What every netctl command is made of: its flags and arguments, help text,
 * and a `run` that talks to the daemon through the API client.
 */
import type { ApiClient } from '../api/client.js';
import type { ArgCount, FlagSpec, ParsedArgs } from './args.js';

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Reads one line of standard input (for confirmations); empty at end of input. */
  readonly readLine: () => Promise<string>;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface CommandContext {
  readonly io: CliIo;
  /** The daemon address, `unix:///path`. */
  readonly host: string;
  readonly version: string;
  client(): ApiClient;
}

export interface Command {
  readonly name: string;
  readonly aliases?: readonly string[];
  /** Usage after the command path, e.g. `[OPTIONS] NETWORK`. */
  readonly usage: string;
  readonly summary: string;
  readonly flags: readonly FlagSpec[];
  readonly args: ArgCount;
  /** Returns the exit code. */
  run(ctx: CommandContext, parsed: ParsedArgs): Promise<number>;
}

export interface CommandGroup {
  readonly name: string;
  readonly summary: string;
  readonly commands: readonly Command[];
}

/** An error whose message is printed as it is (docker prints client-side errors without a prefix). */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}
